"""Tests of cleftscore.gan.checkpoints: safe loading of NVIDIA pickles, rosinality .pt, npz, safetensors."""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import nvidia_pickles as NP
from cleftscore.errors import CheckpointError
from cleftscore.gan import checkpoints as ck
from cleftscore.gan.config import FFHQ1024, GeneratorConfig
from conftest import LOCAL_GOLDEN, SHARED_GOLDEN

T32 = GeneratorConfig(
    z_dim=64, w_dim=64, img_resolution=32, mapping_layers=2, channel_base=512, channel_max=64,
    num_fp16_res=0, conv_clamp=None,
)  # fmt: skip
T64 = GeneratorConfig(
    z_dim=64, w_dim=64, img_resolution=64, mapping_layers=2, channel_base=1024, channel_max=64,
    num_fp16_res=2, conv_clamp=256,
)  # fmt: skip


def _keys(path: Path) -> list[tuple[str, str, tuple[int, ...]]]:
    rows = [line.rstrip("\n").split("\t") for line in path.read_text().splitlines(True) if not line.startswith("#")]
    return [(r[0], r[1], tuple(int(s) for s in r[2].strip("()").split(",") if s.strip())) for r in rows]


@pytest.fixture(scope="module")
def t32_state() -> dict[str, torch.Tensor]:
    with np.load(LOCAL_GOLDEN / "t32_state_dict.npz") as data:
        return {k: torch.from_numpy(data[k].copy()) for k in data.files}


def _assert_same_state(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == torch.float32, k
        assert torch.equal(got[k], want[k].float()), k


def _golden_image_check(G: torch.nn.Module, name: str = "t32") -> None:
    z = torch.from_numpy(np.load(LOCAL_GOLDEN / f"{name}_z.npy"))
    with torch.no_grad():
        img = G(z, noise_mode="const", force_fp32=True)
    np.testing.assert_allclose(img.numpy(), np.load(LOCAL_GOLDEN / f"{name}_img_fp32.npy"), atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------
# Key lists and npz


@pytest.mark.parametrize("name,config", [("t32", T32), ("t64", T64), ("real1024", FFHQ1024)])
def test_expected_shapes_match_official_key_lists(name: str, config: GeneratorConfig) -> None:
    path = LOCAL_GOLDEN / f"{name}_keys.txt"
    if not path.exists():
        path = SHARED_GOLDEN / f"{name}_keys.txt"
        if not path.exists():
            pytest.skip(f"{name}_keys.txt needs the shared folder")
    want = [(k, shape) for k, _kind, shape in _keys(path)]
    assert list(ck.expected_shapes(config).items()) == want


def test_npz_reads_exact_tensors_and_generator_reproduces_golden(t32_state) -> None:
    config, state = ck.read_checkpoint(LOCAL_GOLDEN / "t32_state_dict.npz")
    assert config == T32
    _assert_same_state(state, t32_state)
    G = ck.load_generator(LOCAL_GOLDEN / "t32_state_dict.npz")
    assert G.config == T32 and not G.training
    assert not any(p.requires_grad for p in G.parameters())
    np.testing.assert_array_equal(G.mapping.w_avg.numpy(), np.load(LOCAL_GOLDEN / "t32_w_avg.npy"))
    _golden_image_check(G)


def test_npz_missing_and_misshaped_tensors_are_named(tmp_path, t32_state) -> None:
    broken = {k: v.numpy() for k, v in t32_state.items() if k != "synthesis.b16.conv1.bias"}
    np.savez(tmp_path / "missing.npz", **broken)
    with pytest.raises(CheckpointError, match=r"missing.npz.*synthesis\.b16\.conv1\.bias"):
        ck.read_checkpoint(tmp_path / "missing.npz")
    bad = {k: v.numpy() for k, v in t32_state.items()}
    bad["synthesis.b8.torgb.bias"] = np.zeros(4, np.float32)
    np.savez(tmp_path / "shape.npz", **bad)
    with pytest.raises(CheckpointError, match=r"synthesis\.b8\.torgb\.bias"):
        ck.read_checkpoint(tmp_path / "shape.npz")


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "empty"),
        (b"hello, I am not a checkpoint at all", "unknown weights format"),
        (b"PK\x03\x04garbage", "zip"),
    ],
)
def test_garbage_files_give_checkpoint_error(tmp_path, content: bytes, match: str) -> None:
    path = tmp_path / "weights.pkl"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        ck.read_checkpoint(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        ck.read_checkpoint(tmp_path / "nope.pkl")


# ---------------------------------------------------------------------------------------------
# NVIDIA pickles, built in the structure NVIDIA's persistence module writes (tests/nvidia_pickles.py).


@pytest.fixture()
def fake():
    with NP.nvidia_modules() as handles:
        yield handles
    assert handles.calls == [], "NVIDIA's reconstruct function was called"


def _golden_state(name: str) -> dict[str, torch.Tensor]:
    with np.load(LOCAL_GOLDEN / f"{name}_state_dict.npz") as data:
        return {k: torch.from_numpy(data[k].copy()) for k in data.files}


def _exact_in_half(state: dict[str, torch.Tensor]) -> set[str]:
    """Tensors that float16 stores exactly (resampling filters, say): fp16 storages, same image."""
    return {k for k, v in state.items() if torch.equal(v.half().float(), v)}


def _nvidia_generator(fake, name: str, *, half: set[str] | None = None, flat: bool = False, state=None, **over):
    state = _golden_state(name) if state is None else state
    config = {"t32": T32, "t64": T64}[name]
    kw = NP.init_kwargs_from_golden(fake, config, flat_synthesis=flat)
    kw.update(over)
    half = _exact_in_half(state) if half is None else half
    return NP.build_generator(fake, state, NP.read_keys(LOCAL_GOLDEN / f"{name}_keys.txt"), kw, half=half)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("name", ["t32", "t64"])
def test_nvidia_training_snapshot_loads_and_reproduces_golden(tmp_path, fake, name: str, protocol: int) -> None:
    G_ema = _nvidia_generator(fake, name)
    G = _nvidia_generator(fake, name)
    path = NP.dump(NP.snapshot(fake, G_ema, G), tmp_path / "network-snapshot-000000.pkl", protocol=protocol)
    raw = path.read_bytes()
    # the file holds what NVIDIA's holds: bare class names, source text, fp16 storages, the
    # discriminator and the augment pipe, and (protocol 2) Python 2 global names
    assert b"torch_utils.persistence" in raw and b"_load_from_bytes" in raw and b"EasyDict" in raw
    assert b"training.networks" not in raw and b"Discriminator" in raw and b"AugmentPipe" in raw
    assert b"HalfStorage" in raw and b"class SynthesisBlock" in raw
    assert (b"__builtin__" in raw) == (protocol == 2)

    config, state = ck.read_checkpoint(path)
    assert config == {"t32": T32, "t64": T64}[name]
    _assert_same_state(state, _golden_state(name))
    G_loaded = ck.load_generator(path)
    z = torch.from_numpy(np.load(LOCAL_GOLDEN / f"{name}_z.npy"))
    with torch.no_grad():
        img = G_loaded(z, noise_mode="const", force_fp32=True)
    np.testing.assert_allclose(img.numpy(), np.load(LOCAL_GOLDEN / f"{name}_img_fp32.npy"), atol=1e-3, rtol=0)
    assert not Path("/tmp/cleftscore-module-src-was-executed").exists()


def test_nvidia_pickle_takes_g_ema_not_g(tmp_path, fake) -> None:
    state = _golden_state("t32")
    other = {k: v + 1 for k, v in state.items()}
    path = NP.dump(NP.snapshot(fake, _nvidia_generator(fake, "t32"), _nvidia_generator(fake, "t32", state=other)),
                   tmp_path / "snap.pkl")  # fmt: skip
    _config, got = ck.read_checkpoint(path)
    _assert_same_state(got, state)


def test_stylegan3_repo_stylegan2_flat_kwargs(tmp_path, fake) -> None:
    # the stylegan3 repository's StyleGAN2 generator takes its synthesis settings as top-level kwargs
    path = NP.dump(NP.snapshot(fake, _nvidia_generator(fake, "t64", flat=True)), tmp_path / "sg2.pkl")
    config, _state = ck.read_checkpoint(path)
    assert config == T64


def test_nvidia_pickle_float16_weights_are_read_as_stored(tmp_path, fake) -> None:
    state = _golden_state("t32")
    half = {"synthesis.b32.conv1.weight", "mapping.fc1.bias", "synthesis.b4.const"}
    path = NP.dump({"G_ema": _nvidia_generator(fake, "t32", half=half)}, tmp_path / "ffhq.pkl")
    _config, got = ck.read_checkpoint(path)
    for k, v in state.items():
        want = v.half().float() if k in half else v
        assert got[k].dtype == torch.float32
        assert torch.equal(got[k], want), k
    assert not torch.equal(got["synthesis.b32.conv1.weight"], state["synthesis.b32.conv1.weight"])


def test_nvidia_pickle_non_contiguous_tensor_view(tmp_path, fake) -> None:
    state = _golden_state("t32")
    st = dict(state)
    # a transposed view shares a storage with a different stride; it must come back equal
    st["mapping.fc1.weight"] = state["mapping.fc1.weight"].t().contiguous().t()
    path = NP.dump({"G_ema": _nvidia_generator(fake, "t32", state=st)}, tmp_path / "g.pkl")
    _config, got = ck.read_checkpoint(path)
    assert torch.equal(got["mapping.fc1.weight"], state["mapping.fc1.weight"])


@pytest.mark.parametrize(
    "change,match",
    [
        ({"c_dim": 10}, "conditional"),
        (
            {"synthesis_kwargs": {"channel_base": 512, "channel_max": 64, "architecture": "resnet"}},
            "architecture 'resnet'",
        ),
        ({"img_resolution": 64}, "missing tensors"),
        ({"mapping_kwargs": {"num_layers": 3_000_000}}, "mapping_layers must be at most 32"),
        ({"synthesis_kwargs": {"channel_base": 512, "channel_max": 1 << 30}}, "channel_max must be at most"),
        ({"synthesis_kwargs": {"channel_base": 512, "channel_max": 64, "resample_filter": [1, 1]}}, "resample filter"),
    ],
)
def test_nvidia_pickle_unsupported_configs(tmp_path, fake, change, match) -> None:
    path = NP.dump({"G_ema": _nvidia_generator(fake, "t32", **change)}, tmp_path / "g.pkl")
    with pytest.raises(CheckpointError, match=match):
        ck.read_checkpoint(path)


def _stylegan3_like(fake, *, src: str, keys_too: bool, **kw) -> torch.nn.Module:
    state = _golden_state("t32")
    keys = NP.read_keys(LOCAL_GOLDEN / "t32_keys.txt")
    if keys_too:  # StyleGAN3's synthesis starts from Fourier features, not a constant
        state = {
            **state,
            "synthesis.input.freqs": torch.randn(8, 2),
            "synthesis.L0_36_64.weight": torch.randn(4, 4, 1, 1),
        }
        keys = keys + [("synthesis.input.freqs", "buffer"), ("synthesis.L0_36_64.weight", "param")]
    init = NP.init_kwargs_from_golden(fake, T32, flat_synthesis=True)
    init.update(kw)
    return NP.build_generator(fake, state, keys, init, src=src)


@pytest.mark.parametrize(
    "src,keys_too,kw,match",
    [
        (NP.STYLEGAN3_SRC, False, {}, "StyleGAN3-T generator"),
        (NP.STYLEGAN3_SRC, False, {"conv_kernel": 1, "use_radial_filters": True}, "StyleGAN3-R generator"),
        (NP.STYLEGAN2_SRC, True, {}, r"StyleGAN3 generator \(its tensors\)"),
        (NP.STYLEGAN2_SRC, False, {"magnitude_ema_beta": 0.999}, "StyleGAN3-T"),
        ("class Generator(torch.nn.Module): ...\n", False, {}, "neither StyleGAN2's nor StyleGAN3's"),
    ],
)
def test_stylegan3_and_unknown_generators_refused_by_name(tmp_path, fake, src, keys_too, kw, match) -> None:
    G = _stylegan3_like(fake, src=src, keys_too=keys_too, **kw)
    path = NP.dump(NP.snapshot(fake, G), tmp_path / "stylegan3-t-ffhq-1024x1024.pkl")
    with pytest.raises(CheckpointError, match=match):
        ck.read_checkpoint(path)


def test_other_networks_as_g_ema_refused_by_name(tmp_path, fake) -> None:
    D = NP.build_discriminator(fake, 32)
    with pytest.raises(CheckpointError, match="'G_ema' is a Discriminator network"):
        ck.read_checkpoint(NP.dump({"G_ema": D}, tmp_path / "d.pkl"))
    with pytest.raises(CheckpointError, match="no 'G_ema'"):
        ck.read_checkpoint(NP.dump({"D": D}, tmp_path / "x.pkl"))


def test_truncated_pickle(tmp_path, fake) -> None:
    raw = pickle.dumps({"G_ema": _nvidia_generator(fake, "t32")}, protocol=4)
    for cut in (len(raw) // 3, len(raw) - 2):
        path = tmp_path / f"cut{cut}.pkl"
        path.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError, match=r"cut\d+\.pkl"):
            ck.read_checkpoint(path)


class _Evil:
    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize("kind", ["os.system", "builtins.open", "builtins.eval", "subprocess"])
def test_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, kind: str) -> None:
    import subprocess

    victim = tmp_path / "pwned.txt"
    payload = {
        "os.system": _Evil(os.system, f"touch {victim}"),
        "builtins.open": _Evil(open, str(victim), "w"),
        "builtins.eval": _Evil(eval, f"open({str(victim)!r}, 'w')"),
        "subprocess": _Evil(subprocess.call, ["touch", str(victim)]),
    }[kind]
    path = NP.dump({"G_ema": payload}, tmp_path / "evil.pkl")
    with pytest.raises(CheckpointError, match=r"refused to load.*(system|open|eval|subprocess|call)"):
        ck.read_checkpoint(path)
    assert not victim.exists()


def test_code_hidden_in_a_storage_blob_is_refused(tmp_path) -> None:
    victim = tmp_path / "pwned.txt"
    blob = pickle.dumps(_Evil(os.system, f"touch {victim}"))

    class _Blob:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (blob,))

    path = NP.dump({"G_ema": _Blob()}, tmp_path / "evil.pkl")
    with pytest.raises(CheckpointError):
        ck.read_checkpoint(path)
    assert not victim.exists()


# ---------------------------------------------------------------------------------------------
# rosinality checkpoints (built here by the inverse key mapping)


def _to_rosinality(state: dict[str, torch.Tensor], config: GeneratorConfig) -> dict[str, torch.Tensor]:
    s = state
    g: dict[str, torch.Tensor] = {}
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kern = torch.outer(k, k) / 64

    def styled(src: str, dst: str, noise: int, up: bool) -> None:
        g[f"{dst}.conv.weight"] = s[f"{src}.weight"].unsqueeze(0)
        g[f"{dst}.conv.modulation.weight"] = s[f"{src}.affine.weight"]
        g[f"{dst}.conv.modulation.bias"] = s[f"{src}.affine.bias"]
        if up:
            g[f"{dst}.conv.blur.kernel"] = kern * 4
        g[f"{dst}.noise.weight"] = s[f"{src}.noise_strength"].reshape(1)
        g[f"{dst}.activate.bias"] = s[f"{src}.bias"]
        r = s[f"{src}.noise_const"].shape[-1]
        g[f"noises.noise_{noise}"] = s[f"{src}.noise_const"].reshape(1, 1, r, r)

    def rgb(src: str, dst: str, up: bool) -> None:
        if up:
            g[f"{dst}.upsample.kernel"] = kern * 4
        g[f"{dst}.bias"] = s[f"{src}.bias"].reshape(1, -1, 1, 1)
        g[f"{dst}.conv.weight"] = s[f"{src}.weight"].unsqueeze(0)
        g[f"{dst}.conv.modulation.weight"] = s[f"{src}.affine.weight"]
        g[f"{dst}.conv.modulation.bias"] = s[f"{src}.affine.bias"]

    for i in range(config.mapping_layers):
        g[f"style.{i + 1}.weight"] = s[f"mapping.fc{i}.weight"]
        g[f"style.{i + 1}.bias"] = s[f"mapping.fc{i}.bias"]
    g["input.input"] = s["synthesis.b4.const"].unsqueeze(0)
    styled("synthesis.b4.conv1", "conv1", 0, False)
    rgb("synthesis.b4.torgb", "to_rgb1", False)
    res, i = 8, 0
    while res <= config.img_resolution:
        styled(f"synthesis.b{res}.conv0", f"convs.{2 * i}", 2 * i + 1, True)
        styled(f"synthesis.b{res}.conv1", f"convs.{2 * i + 1}", 2 * i + 2, False)
        rgb(f"synthesis.b{res}.torgb", f"to_rgbs.{i}", True)
        res, i = res * 2, i + 1
    return g


def test_rosinality_round_trip(tmp_path, t32_state) -> None:
    g = _to_rosinality(t32_state, T32)
    latent = t32_state["mapping.w_avg"].clone()
    torch.save({"g_ema": g, "latent_avg": latent, "args": argparse.Namespace(size=32)}, tmp_path / "r.pt")
    assert ck.detect_format(tmp_path / "r.pt") == "torch"
    config, state = ck.read_checkpoint(tmp_path / "r.pt")
    assert config == T32
    _assert_same_state(state, t32_state)
    # The legacy (non-zip) torch.save format is read too.
    torch.save({"g_ema": g, "latent_avg": latent}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    _config, state2 = ck.read_checkpoint(tmp_path / "legacy.pt")
    _assert_same_state(state2, t32_state)
    _golden_image_check(ck.load_generator(tmp_path / "legacy.pt"))


def test_rosinality_without_latent_avg_computes_w_avg(tmp_path, t32_state) -> None:
    torch.save({"g_ema": _to_rosinality(t32_state, T32)}, tmp_path / "r.pt")
    _config, state = ck.read_checkpoint(tmp_path / "r.pt")
    # golden w_avg is a mean over 4,096 z; ours over 10,000: the same within sampling error
    got, want = state["mapping.w_avg"], t32_state["mapping.w_avg"]
    spread = float(want.abs().mean())
    assert float((got - want).abs().max()) < 0.1 * spread + 1e-3


def test_torch_file_of_another_network_is_rejected(tmp_path) -> None:
    classifier = {"features.0.weight": torch.zeros(64, 3, 3, 3), "classifier.0.weight": torch.zeros(10, 64)}
    torch.save(classifier, tmp_path / "vgg.pth")
    with pytest.raises(CheckpointError, match="not a StyleGAN2 generator"):
        ck.read_checkpoint(tmp_path / "vgg.pth")
    broken = _to_rosinality(dict(_t32_state_plain().items()), T32)
    del broken["convs.3.activate.bias"]
    torch.save({"g_ema": broken}, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=r"convs\.3\.activate\.bias"):
        ck.read_checkpoint(tmp_path / "broken.pt")


def test_torch_file_needing_code_is_refused(tmp_path) -> None:
    victim = tmp_path / "pwned.txt"
    torch.save({"g_ema": _Evil(os.system, f"touch {victim}")}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused to load"):
        ck.read_checkpoint(tmp_path / "evil.pt")
    assert not victim.exists()


def _t32_state_plain() -> dict[str, torch.Tensor]:
    with np.load(LOCAL_GOLDEN / "t32_state_dict.npz") as data:
        return {k: torch.from_numpy(data[k].copy()) for k in data.files}


# ---------------------------------------------------------------------------------------------
# safetensors


def test_safetensors_round_trip_keeps_config(tmp_path) -> None:
    config, state = ck.read_checkpoint(LOCAL_GOLDEN / "t64_state_dict.npz")
    assert config.num_fp16_res == 0  # not visible in shapes
    out = ck.save_generator(state, tmp_path / "g.safetensors", config=T64)
    assert ck.detect_format(out) == "safetensors"
    config2, state2 = ck.read_checkpoint(out)
    assert config2 == T64
    _assert_same_state(state2, state)
    G = ck.load_generator(out)
    out2 = ck.save_generator(G, tmp_path / "g2.safetensors")
    assert ck.read_checkpoint(out2)[0] == T64


def test_save_generator_checks_input(tmp_path, t32_state) -> None:
    with pytest.raises(ValueError, match="config="):
        ck.save_generator(t32_state, tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="missing"):
        ck.save_generator(t32_state, tmp_path / "x.safetensors", config=T64)


def test_damaged_safetensors(tmp_path) -> None:
    out = ck.save_generator(_t32_state_plain(), tmp_path / "g.safetensors", config=T32)
    raw = out.read_bytes()
    out.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="g.safetensors"):
        ck.read_checkpoint(out)


def test_npz_with_pickled_objects_is_refused(tmp_path) -> None:
    victim = tmp_path / "pwned.txt"
    np.savez(tmp_path / "obj.npz", x=np.array([_Evil(os.system, f"touch {victim}")], dtype=object))
    with pytest.raises(CheckpointError):
        ck.read_checkpoint(tmp_path / "obj.npz")
    assert not victim.exists()
    with zipfile.ZipFile(tmp_path / "obj.npz") as zf:
        assert zf.namelist() == ["x.npy"]


# ---------------------------------------------------------------------------------------------
# Resource limits: what an untrusted file claims is checked before it is expanded.


def _patch_zip_sizes(path: Path, member: str, new_size: int) -> None:
    """Rewrite the uncompressed size a zip's local and central headers declare for ``member``."""
    raw = bytearray(path.read_bytes())
    name = member.encode()
    for sig, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (i := raw.find(sig, start)) >= 0:
            name_at = i + (30 if sig == b"PK\x03\x04" else 46)
            if raw[name_at : name_at + len(name)] == name:
                raw[i + size_at : i + size_at + 4] = new_size.to_bytes(4, "little")
            start = i + 4
    path.write_bytes(bytes(raw))


def test_npz_declared_inflated_size_over_limit_is_refused(tmp_path) -> None:
    path = tmp_path / "big.npz"
    np.savez_compressed(path, **{"synthesis.b4.const": np.zeros((64, 4, 4), np.float32)})
    _patch_zip_sizes(path, "synthesis.b4.const.npy", 3 << 30)
    with pytest.raises(CheckpointError, match=r"inflate to 3072 MiB, more than the 1024 MiB limit"):
        ck.read_checkpoint(path)


def test_npz_header_shape_must_fit_its_member(tmp_path) -> None:
    path = tmp_path / "liar.npz"
    np.savez(path, **{"synthesis.b4.const": np.zeros((64, 4, 4), np.float32)})
    raw = path.read_bytes().replace(b"(64, 4, 4)", b"(64, 4, 9)")
    path.write_bytes(raw)
    with pytest.raises(CheckpointError, match=r"declares shape \(64, 4, 9\), which does not fit"):
        ck.read_checkpoint(path)


def test_forged_pickle_length_does_not_allocate(tmp_path) -> None:
    # BINBYTES8 claiming 1 TiB, followed by 8 bytes: the read is clamped to the file's size
    path = tmp_path / "forged.pkl"
    path.write_bytes(b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"12345678")
    with pytest.raises(CheckpointError, match="forged.pkl: malformed"):
        ck.read_checkpoint(path)


def test_overlapping_tensor_strides_are_refused(tmp_path, fake) -> None:
    state = _golden_state("t32")
    state["synthesis.b32.conv1.weight"] = torch.zeros(1).expand(state["synthesis.b32.conv1.weight"].shape)
    path = NP.dump({"G_ema": _nvidia_generator(fake, "t32", state=state, half=set())}, tmp_path / "expand.pkl")
    with pytest.raises(CheckpointError, match="overlapping strides"):
        ck.read_checkpoint(path)


def test_tensor_budget_is_checked_before_copying(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ck, "MAX_TENSOR_BYTES", 1 << 16)
    with pytest.raises(CheckpointError, match="more than the 0 MiB limit"):
        ck.read_checkpoint(LOCAL_GOLDEN / "t32_state_dict.npz")


def _peak_rss_mb_of(code: str) -> tuple[float, str]:
    import subprocess

    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking pytest process.
    prog = (
        code
        + "\nimport re\nprint('PEAK', int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=120, check=True).stdout
    peak = float(out.rsplit("PEAK", 1)[1])
    return peak, out


@pytest.mark.slow
def test_npz_zip_bomb_and_huge_mapping_claim_are_refused_with_little_memory(tmp_path, fake) -> None:
    import io as _io

    bomb = tmp_path / "bomb.npz"
    header = _io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (2**29,)})
    info = zipfile.ZipInfo("synthesis.b4.const.npy")
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(bomb, "w") as zf, zf.open(info, "w", force_zip64=True) as f:
        f.write(header.getvalue())
        zeros = bytes(1 << 24)
        for _ in range(128):  # 2 GiB of zeros, about 2 MB compressed
            f.write(zeros)
    assert bomb.stat().st_size < 3 << 20
    layers = NP.dump({"G_ema": _nvidia_generator(fake, "t32", mapping_kwargs=fake.EasyDict(num_layers=3_000_000))},
                     tmp_path / "layers.pkl")  # fmt: skip
    for path, match in ((bomb, "inflate to 2048 MiB"), (layers, "mapping_layers must be at most 32")):
        peak, out = _peak_rss_mb_of(
            "from cleftscore.gan.checkpoints import read_checkpoint\n"
            "from cleftscore.errors import CheckpointError\n"
            f"try:\n    read_checkpoint({str(path)!r})\nexcept CheckpointError as exc:\n    print('REFUSED', exc)\n"
        )
        assert "REFUSED" in out and match in out
        assert peak < 300, f"{path.name}: peak RSS {peak:.0f} MB"
