"""Tests of cleftscore.gan.checkpoints: safe loading of NVIDIA pickles, rosinality .pt, npz, safetensors."""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

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
# NVIDIA pickles, built here in NVIDIA's structure with throwaway stand-in modules.


@pytest.fixture()
def nvidia_modules(monkeypatch):
    """Fake ``torch_utils.persistence`` and ``dnnlib.util`` so pickle can emit their GLOBALs."""
    calls: list[object] = []
    torch_utils = types.ModuleType("torch_utils")
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - must never run while loading
        calls.append(meta)
        raise AssertionError("NVIDIA code was executed")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    torch_utils.persistence = persistence
    dnnlib = types.ModuleType("dnnlib")
    util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        def __getattr__(self, name):
            try:
                return self[name]
            except KeyError:
                raise AttributeError(name) from None

        def __setattr__(self, name, value):
            self[name] = value

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    util.EasyDict = EasyDict
    dnnlib.util = util
    for name, mod in [("torch_utils", torch_utils), ("torch_utils.persistence", persistence), ("dnnlib", dnnlib), ("dnnlib.util", util)]:
        monkeypatch.setitem(sys.modules, name, mod)
    return types.SimpleNamespace(reconstruct=_reconstruct_persistent_obj, EasyDict=EasyDict, calls=calls)


class _Persistent:
    """Pickles like an object of NVIDIA's ``persistent_class``."""

    def __init__(self, reconstruct, class_name: str, state: dict) -> None:
        self.reconstruct = reconstruct
        self.meta = dict(
            type="class", version=6, class_name=class_name, state=state,
            module_src="import os\nos.system('touch /tmp/cleftscore-should-never-exist')\n",
        )  # fmt: skip

    def __reduce__(self):
        return (self.reconstruct, (self.meta,))


def _module_state(**extra) -> dict:
    return dict(
        training=False, _parameters=collections.OrderedDict(), _buffers=collections.OrderedDict(),
        _non_persistent_buffers_set=set(), _backward_hooks=collections.OrderedDict(),
        _forward_hooks=collections.OrderedDict(), _modules=collections.OrderedDict(), **extra,
    )  # fmt: skip


def _nvidia_tree(fake, state: dict[str, torch.Tensor], keys_file: Path, init_kwargs: dict, *, half: set[str] = frozenset(), class_name: str = "training.networks.Generator") -> _Persistent:
    kinds = {k: kind for k, kind, _shape in _keys(keys_file)}
    root = _module_state(_init_args=(), _init_kwargs=fake.EasyDict(init_kwargs), img_resolution=np.int64(32))
    for key in kinds:
        *path, leaf = key.split(".")
        node = root
        for part in path:
            node = node["_modules"].setdefault(part, _module_state())
        t = state[key].half() if key in half else state[key].clone()
        if kinds[key] == "param":
            node["_parameters"][leaf] = torch.nn.Parameter(t, requires_grad=False)
        else:
            node["_buffers"][leaf] = t

    def wrap(node: dict, name: str) -> _Persistent:
        node["_modules"] = collections.OrderedDict((k, wrap(v, k)) for k, v in node["_modules"].items())
        return _Persistent(fake.reconstruct, f"training.networks.{name}", node)

    g = wrap(root, "Generator")
    g.meta["class_name"] = class_name
    return g


def _t32_init_kwargs(fake, **over) -> dict:
    kw = dict(
        z_dim=64, c_dim=0, w_dim=64, img_resolution=32, img_channels=3,
        mapping_kwargs=fake.EasyDict(num_layers=2),
        synthesis_kwargs=fake.EasyDict(channel_base=512, channel_max=64, num_fp16_res=0, conv_clamp=None),
    )  # fmt: skip
    kw.update(over)
    return kw


def _write_pickle(path: Path, obj, protocol: int = 3) -> Path:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def test_nvidia_pickle_loads_without_running_code(tmp_path, nvidia_modules, t32_state) -> None:
    fake = nvidia_modules
    G_ema = _nvidia_tree(fake, t32_state, LOCAL_GOLDEN / "t32_keys.txt", _t32_init_kwargs(fake))
    D = _Persistent(fake.reconstruct, "training.networks.Discriminator", _module_state())
    snapshot = dict(G=G_ema, D=D, G_ema=G_ema, augment_pipe=None, training_set_kwargs=fake.EasyDict(path="x.zip"))
    path = _write_pickle(tmp_path / "network-snapshot-000000.pkl", snapshot)
    raw = path.read_bytes()
    assert b"torch_utils.persistence" in raw and b"_load_from_bytes" in raw and b"EasyDict" in raw

    config, state = ck.read_checkpoint(path)
    assert config == T32
    _assert_same_state(state, t32_state)
    assert fake.calls == []
    assert ck.detect_format(path) == "nvidia-pickle"
    G = ck.load_generator(path)
    assert G.config == T32
    _golden_image_check(G)


def test_nvidia_pickle_float16_storages_protocol4(tmp_path, nvidia_modules, t32_state) -> None:
    fake = nvidia_modules
    half = {"synthesis.b32.conv1.weight", "mapping.fc1.bias", "synthesis.b4.const"}
    kw = _t32_init_kwargs(fake)
    kw["synthesis_kwargs"]["conv_clamp"] = 256
    kw["synthesis_kwargs"]["num_fp16_res"] = 2
    G_ema = _nvidia_tree(fake, t32_state, LOCAL_GOLDEN / "t32_keys.txt", kw, half=half)
    path = _write_pickle(tmp_path / "ffhq.pkl", {"G_ema": G_ema}, protocol=4)
    assert b"HalfStorage" in path.read_bytes()
    config, state = ck.read_checkpoint(path)
    assert config.conv_clamp == 256 and config.num_fp16_res == 2
    for k, v in t32_state.items():
        want = v.half().float() if k in half else v
        assert state[k].dtype == torch.float32
        assert torch.equal(state[k], want), k
    assert not torch.equal(state["synthesis.b32.conv1.weight"], t32_state["synthesis.b32.conv1.weight"])


def test_nvidia_pickle_non_contiguous_tensor_view(tmp_path, nvidia_modules, t32_state) -> None:
    fake = nvidia_modules
    st = dict(t32_state)
    # a transposed view shares a storage with a different stride; it must come back equal
    st["mapping.fc1.weight"] = t32_state["mapping.fc1.weight"].t().contiguous().t()
    G_ema = _nvidia_tree(fake, st, LOCAL_GOLDEN / "t32_keys.txt", _t32_init_kwargs(fake))
    path = _write_pickle(tmp_path / "g.pkl", {"G_ema": G_ema})
    _config, state = ck.read_checkpoint(path)
    assert torch.equal(state["mapping.fc1.weight"], t32_state["mapping.fc1.weight"])


@pytest.mark.parametrize(
    "change,match",
    [
        ({"c_dim": 10}, "conditional"),
        ({"synthesis_kwargs": {"channel_base": 512, "channel_max": 64, "architecture": "resnet"}}, "architecture 'resnet'"),
        ({"img_resolution": 64}, "missing tensors"),
    ],
)
def test_nvidia_pickle_unsupported_configs(tmp_path, nvidia_modules, t32_state, change, match) -> None:
    fake = nvidia_modules
    G_ema = _nvidia_tree(fake, t32_state, LOCAL_GOLDEN / "t32_keys.txt", _t32_init_kwargs(fake, **change))
    path = _write_pickle(tmp_path / "g.pkl", {"G_ema": G_ema})
    with pytest.raises(CheckpointError, match=match):
        ck.read_checkpoint(path)


def test_stylegan3_and_other_networks_rejected(tmp_path, nvidia_modules, t32_state) -> None:
    fake = nvidia_modules
    G3 = _nvidia_tree(fake, t32_state, LOCAL_GOLDEN / "t32_keys.txt", _t32_init_kwargs(fake), class_name="training.networks_stylegan3.Generator")
    with pytest.raises(CheckpointError, match="StyleGAN3"):
        ck.read_checkpoint(_write_pickle(tmp_path / "sg3.pkl", {"G_ema": G3}))
    D = _Persistent(fake.reconstruct, "training.networks.Discriminator", _module_state())
    with pytest.raises(CheckpointError, match="Discriminator"):
        ck.read_checkpoint(_write_pickle(tmp_path / "d.pkl", {"G_ema": D}))
    with pytest.raises(CheckpointError, match="no 'G_ema'"):
        ck.read_checkpoint(_write_pickle(tmp_path / "x.pkl", {"D": D}))


def test_truncated_pickle(tmp_path, nvidia_modules, t32_state) -> None:
    fake = nvidia_modules
    G_ema = _nvidia_tree(fake, t32_state, LOCAL_GOLDEN / "t32_keys.txt", _t32_init_kwargs(fake))
    raw = pickle.dumps({"G_ema": G_ema}, protocol=3)
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
    path = _write_pickle(tmp_path / "evil.pkl", {"G_ema": payload})
    with pytest.raises(CheckpointError, match=r"refused to load.*(system|open|eval|subprocess|call)"):
        ck.read_checkpoint(path)
    assert not victim.exists()


def test_code_hidden_in_a_storage_blob_is_refused(tmp_path) -> None:
    victim = tmp_path / "pwned.txt"
    blob = pickle.dumps(_Evil(os.system, f"touch {victim}"))

    class _Blob:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (blob,))

    path = _write_pickle(tmp_path / "evil.pkl", {"G_ema": _Blob()})
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
    broken = _to_rosinality({k: v for k, v in _t32_state_plain().items()}, T32)
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
