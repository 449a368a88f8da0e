"""Tests of cleftscore.weights (registry, downloader, resolution, verification) and `cleftscore weights`."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import nvidia_pickles as NP
from cleftscore import weights as W
from cleftscore.cli import app
from cleftscore.errors import CheckpointError, DownloadError, WeightsMissingError
from cleftscore.gan.config import GeneratorConfig
from cleftscore.perceptual import vgg16_feature_shapes
from conftest import LOCAL_GOLDEN

T32 = GeneratorConfig(z_dim=64, w_dim=64, img_resolution=32, mapping_layers=2, channel_base=512, channel_max=64,
                      num_fp16_res=0, conv_clamp=None)  # fmt: skip


RANDOM = np.random.default_rng(0).bytes(300_000)  # served where a weights file is expected


def _generator_pickle() -> bytes:
    """The t32 golden generator as an NVIDIA training snapshot (what `fetch ffhq` must accept)."""
    state = {k: torch.from_numpy(v) for k, v in np.load(LOCAL_GOLDEN / "t32_state_dict.npz").items()}
    with NP.nvidia_modules() as fake:
        kw = NP.init_kwargs_from_golden(fake, T32)
        G = NP.build_generator(fake, state, NP.read_keys(LOCAL_GOLDEN / "t32_keys.txt"), kw)
        return pickle.dumps(NP.snapshot(fake, G), protocol=4)


PAYLOAD = _generator_pickle()
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; supports ``Range: bytes=N-``.

    ``server.cut_once``: paths whose next body is cut after a third; ``server.no_length``: paths
    served without Content-Length (the body ends when the connection closes); ``server.refuse_range``:
    paths that answer every Range request with 416.
    """

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
            if start >= len(data) or self.path in srv.refuse_range:
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
        if self.path not in srv.no_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in srv.cut_once:
            srv.cut_once.discard(self.path)
            body = body[: len(body) // 3]
            self.close_connection = True
        self.wfile.write(body)
        self.wfile.flush()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests = {"/w.bin": PAYLOAD, "/random.pkl": RANDOM}, []
    srv.cut_once, srv.no_length, srv.refuse_range = set(), set(), set()
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


def _cache_files(folder) -> list[str]:
    """What a download left in the cache folder (lock files are the downloader's own housekeeping)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


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
    from cleftscore.paths import weights_cache_dir

    monkeypatch.setenv("CLEFTSCORE_CACHE", str(tmp_path))
    assert weights_cache_dir() == tmp_path / "weights"
    assert W.weights_path("ffhq") == tmp_path / "weights"
    monkeypatch.delenv("CLEFTSCORE_CACHE")
    assert weights_cache_dir().name == "weights" and "cleftscore" in str(weights_cache_dir())
    assert W.weights_path("ffhq") == weights_cache_dir()


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
    assert _cache_files(tmp_path) == []


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


def test_fetch_416_on_resume_starts_again(tmp_path, server) -> None:
    # a .part as long as the file (or longer) is not "complete": 416 means start again
    (tmp_path / "w.bin.part").write_bytes(bytes(len(PAYLOAD) + 10))
    path = W.fetch(_entry(server.url + "/w.bin"), cache_dir=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert [r for _p, r in server.requests] == [f"bytes={len(PAYLOAD) + 10}-", None]


def _one_line_refusal(exc_info, url: str) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and url in msg and "nothing was cached" in msg
    return msg


@pytest.mark.parametrize(
    "case",
    ["random bytes", "random bytes, no Content-Length", "cut transfer, no Content-Length", "416 after a partial file"],
)
def test_fetch_never_caches_a_file_that_does_not_load(tmp_path, server, case: str) -> None:
    path = {"random bytes": "/random.pkl", "random bytes, no Content-Length": "/random.pkl"}.get(case, "/w.bin")
    url = server.url + path
    if "no Content-Length" in case:
        server.no_length.add(path)
    if case.startswith("cut"):
        server.cut_once.add(path)
    if case.startswith("416"):
        server.files[path] = RANDOM
        server.refuse_range.add(path)
        (tmp_path / "stylegan2-ada-ffhq.pkl.part").write_bytes(PAYLOAD[:1000])
    entry = dataclasses.replace(W.REGISTRY["ffhq"], url=url)
    with pytest.raises(DownloadError) as info:
        W.fetch(entry, cache_dir=tmp_path, progress=False)
    msg = _one_line_refusal(info, url)
    assert "not a usable generator weights file" in msg
    assert ("no Content-Length" in msg) == ("no Content-Length" in case)
    assert _cache_files(tmp_path) == []
    # a later good download succeeds
    server.files[path] = PAYLOAD
    server.no_length.discard(path)
    got = W.fetch(entry, cache_dir=tmp_path, progress=False)
    assert got.read_bytes() == PAYLOAD and _cache_files(tmp_path) == [
        "stylegan2-ada-ffhq.pkl",
        "stylegan2-ada-ffhq.pkl.sha256",
    ]


def test_fetch_vgg16_is_checked_by_its_tensor_shapes(tmp_path, server) -> None:
    _fake_vgg16(tmp_path / "good.pth")
    _fake_vgg16(tmp_path / "short.pth", drop="features.28.weight")
    server.files["/good.pth"] = (tmp_path / "good.pth").read_bytes()
    server.files["/short.pth"] = (tmp_path / "short.pth").read_bytes()
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="not a usable vgg16 weights file: not torchvision's VGG16"):
        W.fetch(_entry(server.url + "/short.pth", kind="vgg16"), cache_dir=cache, progress=False)
    assert _cache_files(cache) == []
    path = W.fetch(_entry(server.url + "/good.pth", kind="vgg16"), cache_dir=cache, progress=False)
    assert path.read_bytes() == server.files["/good.pth"]


def test_two_fetches_at_once_download_once(tmp_path, server) -> None:
    entry = _entry(server.url + "/w.bin")
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(W.fetch(entry, cache_dir=tmp_path, progress=False)))
               for _ in range(2)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [tmp_path / "w.bin"] * 2 and (tmp_path / "w.bin").read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_damaged_cached_file_names_the_command_that_replaces_it(tmp_path, server) -> None:
    from cleftscore.gan.checkpoints import load_generator

    cached = tmp_path / W.REGISTRY["ffhq"].filename
    cached.write_bytes(PAYLOAD[:-50])  # what an older cleftscore may have cached from a cut transfer
    path = W.resolve_generator("ffhq", cache_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"replace it with `cleftscore weights fetch ffhq --force`"):
        with W.replacement_hint_for_errors(path):  # as the GAN normalizer loads it
            load_generator(path)
    with pytest.raises(CheckpointError, match=r"replace it with `cleftscore weights fetch ffhq --force`"):
        W.verify_file(path)
    with pytest.raises(CheckpointError) as plain:  # the reader itself knows nothing of the cache
        load_generator(path)
    assert "weights fetch" not in str(plain.value)
    cached.write_bytes(RANDOM)
    with pytest.raises(CheckpointError, match=r"unknown weights format.*fetch ffhq --force"):
        W.resolve_generator("ffhq", cache_dir=tmp_path)
    result = runner.invoke(app, ["weights", "fetch", "ffhq", "--force", "--url", server.url + "/w.bin",
                                 "--cache-dir", str(tmp_path), "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load_generator(W.resolve_generator("ffhq", cache_dir=tmp_path)).config == T32


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
    cached.write_bytes(PAYLOAD)
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
    sd = {k: torch.zeros(()).expand(s) for k, s in vgg16_feature_shapes().items() if k != drop}
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
    result = runner.invoke(
        app, ["weights", "fetch", "ffhq", "--url", url, "--cache-dir", str(tmp_path), "--no-progress"]
    )
    assert time.monotonic() - t0 < 30
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and url in lines[0] and "--generator PATH" in lines[0]


def test_cli_fetch_from_mirror(tmp_path, server) -> None:
    result = runner.invoke(
        app, ["weights", "fetch", "ffhq", "--url", server.url + "/w.bin", "--cache-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / W.REGISTRY["ffhq"].filename).read_bytes() == PAYLOAD


def test_cached_download_is_checked_against_its_recorded_checksum(tmp_path) -> None:
    cached = tmp_path / W.REGISTRY["ffhq"].filename
    cached.write_bytes(PAYLOAD)
    digest = hashlib.sha256(cached.read_bytes()).hexdigest()
    cached.with_name(cached.name + ".sha256").write_text(f"{digest}  {cached.name}\n")
    assert W.resolve_generator("ffhq", cache_dir=tmp_path) == cached
    cached.write_bytes((LOCAL_GOLDEN / "t64_state_dict.npz").read_bytes())  # another valid generator
    with pytest.raises(CheckpointError, match="does not match the recorded.*fetch ffhq --force"):
        W.resolve_generator("ffhq", cache_dir=tmp_path)


def test_cli_error_keeps_square_brackets(tmp_path) -> None:
    junk = tmp_path / "photo[1].pkl"
    junk.write_bytes(b"\x80\x04 not a pickle")
    result = runner.invoke(app, ["weights", "verify", str(junk)])
    assert result.exit_code == 1 and "photo[1].pkl" in result.output
