"""Tests of cleftscore.weights (registry, downloader, resolution, verification) and `cleftscore weights`."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from conftest import LOCAL_GOLDEN
from typer.testing import CliRunner

from cleftscore import weights as W
from cleftscore.cli import app
from cleftscore.errors import CheckpointError, DownloadError, WeightsMissingError

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MB, several chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; supports ``Range: bytes=N-``; cuts ``server.cut_once`` paths mid-way."""

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in srv.cut_once:
            srv.cut_once.discard(self.path)
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.cut_once, srv.requests = {"/w.bin": PAYLOAD}, set(), []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _entry(url: str, *, sha256: str | None = None, size: int | None = None, kind: str = "generator") -> W.WeightsEntry:
    return W.WeightsEntry(
        name="test", url=url, filename="w.bin", sha256=sha256, size=size,
        licence="test", description="test file", kind=kind,
    )  # fmt: skip


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------------------------
# Registry


def test_registry_entries_are_sane() -> None:
    assert {"ffhq", "vgg16", "lpips-vgg"} <= set(W.REGISTRY)
    vgg = W.REGISTRY["vgg16"]
    # torchvision's convention: the hash in the file name is the start of the file's sha256
    assert vgg.sha256 is not None and vgg.sha256.startswith(vgg.filename.split("-")[1].split(".")[0])
    assert W.REGISTRY["ffhq"].url.startswith("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/")
    assert "non-commercial" in W.REGISTRY["ffhq"].licence
    with pytest.raises(ValueError, match="sha256"):
        dataclasses.replace(vgg, sha256="abc")
    with pytest.raises(WeightsMissingError, match="known: ffhq"):
        W.get_entry("nope")


def test_cache_dir_from_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CLEFTSCORE_CACHE", str(tmp_path))
    assert W.default_cache_dir() == tmp_path / "weights"
    assert W.weights_path("ffhq") == tmp_path / "weights"
    monkeypatch.delenv("CLEFTSCORE_CACHE")
    assert W.default_cache_dir().name == "weights" and "cleftscore" in str(W.default_cache_dir())


def test_bundled_lpips_heads_resolve_to_the_package_file() -> None:
    path = W.fetch("lpips-vgg")
    assert path.is_file() and path.parts[-3:] == ("weights", "v0.1", "vgg.pth")
    report = W.verify_file(path)
    assert report.kind == "lpips-heads" and report.registry_match == "lpips-vgg"


# ---------------------------------------------------------------------------------------------
# Downloader against a local server


def test_fetch_good_file_records_checksum(tmp_path, server) -> None:
    path = W.fetch(_entry(server.url + "/w.bin"), cache_dir=tmp_path, progress=False)
    assert path == tmp_path / "w.bin" and path.read_bytes() == PAYLOAD
    assert (tmp_path / "w.bin.sha256").read_text().split()[0] == PAYLOAD_SHA
    assert not (tmp_path / "w.bin.part").exists()
    # cached: no second request
    n = len(server.requests)
    assert W.fetch(_entry(server.url + "/w.bin"), cache_dir=tmp_path, progress=False) == path
    assert len(server.requests) == n


def test_fetch_verifies_published_checksum(tmp_path, server) -> None:
    entry = _entry(server.url + "/w.bin", sha256=PAYLOAD_SHA, size=len(PAYLOAD))
    assert W.fetch(entry, cache_dir=tmp_path, progress=True).read_bytes() == PAYLOAD
    assert not (tmp_path / "w.bin.sha256").exists()


def test_fetch_wrong_checksum_leaves_nothing(tmp_path, server) -> None:
    entry = _entry(server.url + "/w.bin", sha256="0" * 64)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        W.fetch(entry, cache_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_fetch_resumes_an_interrupted_transfer(tmp_path, server) -> None:
    server.cut_once.add("/w.bin")
    entry = _entry(server.url + "/w.bin", sha256=PAYLOAD_SHA)
    with pytest.raises(DownloadError, match="interrupted"):
        W.fetch(entry, cache_dir=tmp_path, progress=False)
    part = tmp_path / "w.bin.part"
    assert part.is_file() and 0 < part.stat().st_size < len(PAYLOAD)
    have = part.stat().st_size
    assert not (tmp_path / "w.bin").exists()
    path = W.fetch(entry, cache_dir=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD and not part.exists()
    assert server.requests[-1] == ("/w.bin", f"bytes={have}-")


def test_fetch_complete_part_file_gets_416_and_finishes(tmp_path, server) -> None:
    (tmp_path / "w.bin.part").write_bytes(PAYLOAD)
    path = W.fetch(_entry(server.url + "/w.bin", sha256=PAYLOAD_SHA), cache_dir=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_fetch_404_is_a_clear_error(tmp_path, server) -> None:
    with pytest.raises(DownloadError) as info:
        W.fetch(_entry(server.url + "/missing.pkl"), cache_dir=tmp_path, progress=False)
    msg = str(info.value)
    assert "HTTP 404" in msg and server.url + "/missing.pkl" in msg and "--generator PATH" in msg
    assert "\n" not in msg and str(tmp_path / "w.bin") in msg


def test_fetch_offline_fails_fast(tmp_path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/ffhq.pkl"
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match=re.escape(url)):
        W.fetch(_entry(url), cache_dir=tmp_path, progress=False, timeout=5)
    assert time.monotonic() - t0 < 30


# ---------------------------------------------------------------------------------------------
# Resolution


def test_resolve_generator(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CLEFTSCORE_GENERATOR", raising=False)
    with pytest.raises(WeightsMissingError, match=r"cleftscore weights fetch ffhq.*--generator PATH"):
        W.resolve_generator(cache_dir=tmp_path)
    cached = tmp_path / W.REGISTRY["ffhq"].filename
    cached.write_bytes(b"x")
    assert W.resolve_generator("ffhq", cache_dir=tmp_path) == cached
    local = tmp_path / "mine.pkl"
    local.write_bytes(b"x")
    assert W.resolve_generator(str(local)) == local
    monkeypatch.setenv("CLEFTSCORE_GENERATOR", str(local))
    assert W.resolve_generator(None) == local
    with pytest.raises(WeightsMissingError, match="no such file"):
        W.resolve_generator(tmp_path / "absent.pkl")
    with pytest.raises(WeightsMissingError, match="not generator"):
        W.resolve_generator("vgg16", cache_dir=tmp_path)


def test_resolve_vgg16(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CLEFTSCORE_VGG16", raising=False)
    with pytest.raises(WeightsMissingError, match=r"cleftscore weights fetch vgg16.*--vgg16 PATH"):
        W.resolve_vgg16(None, cache_dir=tmp_path)
    local = tmp_path / "v.pth"
    local.write_bytes(b"x")
    monkeypatch.setenv("CLEFTSCORE_VGG16", str(local))
    assert W.resolve_vgg16(None) == local


# ---------------------------------------------------------------------------------------------
# Verification


def _fake_vgg16(path, *, drop: str | None = None) -> None:
    # stride-0 views keep the file tiny while the shapes are torchvision's
    sd = {k: torch.zeros(()).expand(s) for k, s in W.vgg16_feature_shapes().items() if k != drop}
    sd["classifier.6.weight"] = torch.zeros(()).expand(1000, 4096)
    torch.save(sd, path)


def test_verify_generator_and_vgg16(tmp_path) -> None:
    rep = W.verify_file(LOCAL_GOLDEN / "t32_state_dict.npz")
    assert rep.kind == "generator" and rep.format == "npz" and rep.config.img_resolution == 32
    assert rep.sha256 == hashlib.sha256((LOCAL_GOLDEN / "t32_state_dict.npz").read_bytes()).hexdigest()
    _fake_vgg16(tmp_path / "vgg.pth")
    rep = W.verify_file(tmp_path / "vgg.pth")
    assert rep.kind == "vgg16" and rep.config is None and rep.registry_match is None
    _fake_vgg16(tmp_path / "bad.pth", drop="features.28.weight")
    with pytest.raises(CheckpointError, match="not VGG16 weights either"):
        W.verify_file(tmp_path / "bad.pth")


# ---------------------------------------------------------------------------------------------
# CLI

runner = CliRunner()


def test_cli_help_reads_well() -> None:
    result = runner.invoke(app, ["weights", "--help"])
    assert result.exit_code == 0
    for word in ("Find, fetch, convert and verify", "list", "fetch", "path", "convert", "verify"):
        assert word in result.output


def test_cli_list_and_path(tmp_path) -> None:
    result = runner.invoke(app, ["weights", "list", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "ffhq" in result.output and "vgg16" in result.output and "BSD" in result.output
    result = runner.invoke(app, ["weights", "path", "vgg16", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0 and result.output.strip() == str(tmp_path / "vgg16-397923af.pth")


def test_cli_convert_npz_to_safetensors(tmp_path) -> None:
    from cleftscore.gan.checkpoints import read_checkpoint

    out = tmp_path / "t32.safetensors"
    result = runner.invoke(app, ["weights", "convert", str(LOCAL_GOLDEN / "t32_state_dict.npz"), str(out)])
    assert result.exit_code == 0, result.output
    config, state = read_checkpoint(out)
    with np.load(LOCAL_GOLDEN / "t32_state_dict.npz") as ref:
        assert list(state) == list(ref.files)
        for k in ref.files:
            np.testing.assert_array_equal(state[k].numpy(), ref[k])
    result = runner.invoke(app, ["weights", "verify", str(out)])
    assert result.exit_code == 0 and "generator (safetensors)" in result.output and "resolution 32" in result.output


def test_cli_verify_garbage_is_one_line_exit_1(tmp_path) -> None:
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x80\x04 definitely not a pickle")
    result = runner.invoke(app, ["weights", "verify", str(junk)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "junk.pkl" in lines[0]
    assert "Traceback" not in result.output


def test_cli_fetch_offline_one_line_under_30s(tmp_path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/ffhq.pkl"
    t0 = time.monotonic()
    result = runner.invoke(app, ["weights", "fetch", "ffhq", "--url", url, "--cache-dir", str(tmp_path), "--no-progress"])
    assert time.monotonic() - t0 < 30
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and url in lines[0] and "--generator PATH" in lines[0]


def test_cli_fetch_from_mirror(tmp_path, server) -> None:
    result = runner.invoke(app, ["weights", "fetch", "ffhq", "--url", server.url + "/w.bin", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / W.REGISTRY["ffhq"].filename).read_bytes() == PAYLOAD


def test_cached_download_is_checked_against_its_recorded_checksum(tmp_path) -> None:
    cached = tmp_path / W.REGISTRY["ffhq"].filename
    cached.write_bytes(b"the file as first downloaded")
    digest = hashlib.sha256(cached.read_bytes()).hexdigest()
    cached.with_name(cached.name + ".sha256").write_text(f"{digest}  {cached.name}\n")
    assert W.resolve_generator("ffhq", cache_dir=tmp_path) == cached
    cached.write_bytes(b"swapped for something else")
    with pytest.raises(CheckpointError, match="does not match the recorded"):
        W.resolve_generator("ffhq", cache_dir=tmp_path)
