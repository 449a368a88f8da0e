"""Tests of the fused modulated-convolution stages: operators, autograd, network use, Triton kernels."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cleftscore.gan.accel import fused as fz
from cleftscore.gan.networks import SynthesisLayer

F64 = torch.float64


def _plain(y, dcoefs, noise, bias, clamp):
    out = F.leaky_relu(y * dcoefs[:, :, None, None] + (0 if noise is None else noise) + bias[None, :, None, None], 0.2)
    return out if clamp is None else out.clamp(-clamp, clamp)


def _case(noise_kind: str, *, n=3, c=4, h=5, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn((n, c, h, w), generator=g, dtype=F64, requires_grad=True)
    dcoefs = (torch.rand((n, c), generator=g, dtype=F64) + 0.5).requires_grad_(True)
    bias = torch.randn((c,), generator=g, dtype=F64, requires_grad=True)
    shape = {"per_image": (n, 1, h, w), "shared": (1, 1, h, w), "map": (h, w)}.get(noise_kind)
    noise = None if shape is None else torch.randn(shape, generator=g, dtype=F64, requires_grad=True)
    return y, dcoefs, noise, bias


@pytest.mark.parametrize("noise_kind", ["per_image", "shared", "map", "none"])
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_demod_act_matches_plain_ops_values_and_gradients(noise_kind: str, clamp) -> None:
    y, dcoefs, noise, bias = _case(noise_kind)
    inputs = [t for t in (y, dcoefs, noise, bias) if t is not None]
    out = fz.demod_act(y, dcoefs, noise, bias, clamp)
    noise_b = None if noise is None else noise.reshape(-1, 1, *noise.shape[-2:])
    want = _plain(y, dcoefs, noise_b, bias, clamp)
    if clamp is not None:
        assert (want.abs() == clamp).any(), "the clamp must bind somewhere for this test to mean anything"
    assert out.dtype == y.dtype and out.shape == y.shape
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(9), dtype=F64)
    got = torch.autograd.grad((out * probe).sum(), inputs)
    ref = torch.autograd.grad((want * probe).sum(), inputs)
    for a, b in zip(got, ref, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_demod_act_rejects_noise_that_does_not_broadcast_per_image() -> None:
    y, dcoefs, _, bias = _case("none")
    with pytest.raises(ValueError, match="broadcast"):
        fz.demod_act(y, dcoefs, torch.zeros((2, 1, 5, 6), dtype=F64), bias, None)


def test_scale_channels_matches_plain_product_and_rounds_styles_like_it() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn((2, 3, 4, 5), generator=g, dtype=F64, requires_grad=True)
    s = torch.randn((2, 3), generator=g, dtype=F64, requires_grad=True)
    out = fz.scale_channels(x, s)
    want = x * s[:, :, None, None]
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    probe = torch.randn(out.shape, generator=g, dtype=F64)
    for a, b in zip(
        torch.autograd.grad((out * probe).sum(), (x, s)), torch.autograd.grad((want * probe).sum(), (x, s)), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # float16 activations: styles rounded to float16 first, as the plain path does
    x16, s32 = x.detach().half(), s.detach().float()
    assert torch.equal(fz.scale_channels(x16, s32), x16 * s32.half()[:, :, None, None])


def test_usable_only_where_the_kernels_run(monkeypatch) -> None:
    x = torch.zeros((1, 2, 4, 4))
    assert not fz.fused_kernels_usable(x)  # CPU: plain PyTorch ops
    meta = torch.empty((1, 2, 4, 4), device="meta")
    assert fz.fused_kernels_usable(meta)  # the cost model traces the CUDA path
    assert not fz.fused_kernels_usable(meta.to(F64))
    assert not fz.fused_kernels_usable(torch.empty((1, 2, 4, 4), device="meta").to(memory_format=torch.channels_last))
    seen = []

    def inside(t):
        seen.append(fz.fused_kernels_usable(t))  # torch.func transforms: plain ops
        return t

    torch.func.vmap(inside)(torch.empty((2, 1, 2, 4, 4), device="meta"))
    assert seen == [False]
    assert fz.FUSED_KERNELS.usable(meta) and not fz.FUSED_KERNELS.usable(x)


def test_environment_switch_is_read_where_the_normalizer_settings_are_built(monkeypatch) -> None:
    # CLEFTSCORE_FUSED_KERNELS=0 turns the kernels off; it is read when the GAN normalizer is
    # built (into InversionSettings.fused_kernels), never by the network or the kernels.
    from cleftscore.normalize.gan import FUSED_KERNELS_ENV, fused_kernels_wanted

    assert fused_kernels_wanted({}) and fused_kernels_wanted({FUSED_KERNELS_ENV: "1"})
    assert not fused_kernels_wanted({FUSED_KERNELS_ENV: "0"})
    monkeypatch.setenv(FUSED_KERNELS_ENV, "0")
    assert not fused_kernels_wanted()
    meta = torch.empty((1, 2, 4, 4), device="meta")
    assert fz.fused_kernels_usable(meta)  # the operators themselves do not look


class _Forced(fz.FusedKernels):
    """The fused layer on any device (the operators' reference implementation off CUDA)."""

    def usable(self, x: torch.Tensor) -> bool:
        return True


def test_invert_hands_the_kernels_to_the_synthesis_unless_turned_off(monkeypatch) -> None:
    import importlib

    from cleftscore.gan.config import GeneratorConfig
    from cleftscore.gan.networks import Generator

    G = Generator(GeneratorConfig(img_resolution=8, z_dim=8, w_dim=8, mapping_layers=1, channel_base=64,
                                  channel_max=8, num_fp16_res=0), generator=torch.Generator().manual_seed(0)).eval()  # fmt: skip
    inv = importlib.import_module("cleftscore.gan.invert")
    seen = []
    real = inv.projection_loss

    def spy(*args, **kwargs):
        seen.append(kwargs["kernels"])
        return real(*args, **kwargs)

    monkeypatch.setattr(inv, "projection_loss", spy)
    targets = torch.zeros((1, 3, 8, 8))
    for on in (True, False):
        settings = inv.InversionSettings(steps=1, loss="mse", w_avg_samples=8, fused_kernels=on)
        inv.invert(G, targets, settings=settings, loss_fn=None)
    assert seen == [fz.FUSED_KERNELS, None]


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("noise_mode", ["per_image", "const"])
def test_synthesis_layer_with_fused_stages_equals_plain_layer(up: bool, noise_mode: str) -> None:
    # Force the fused path on the CPU (the operators' reference implementation) and compare
    # the whole unfused layer, gradients included, with the plain-op layer.
    layer = SynthesisLayer(6, 4, w_dim=8, resolution=8, up=up, conv_clamp=0.5).double()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        layer.noise_strength.fill_(0.6)
        layer.bias.copy_(torch.randn(4, generator=g, dtype=F64))
    x0 = torch.randn((2, 6, 4 if up else 8, 4 if up else 8), generator=g, dtype=F64)
    w = torch.randn((2, 8), generator=g, dtype=F64)
    noise = torch.randn((2, 1, 8, 8), generator=g, dtype=F64) if noise_mode == "per_image" else None
    probe = torch.randn((2, 4, 8, 8), generator=g, dtype=F64)
    results = []
    for kernels in (None, _Forced()):
        x = x0.clone().requires_grad_(True)
        out = layer(x, w, noise=noise, noise_mode="const", fused=False, kernels=kernels)
        params = (x, layer.weight, layer.noise_strength, layer.bias, layer.affine.weight)
        results.append((out, *torch.autograd.grad((out * probe).sum(), params)))
    assert (results[0][0].abs() == 0.5).any()
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_cost_model_traces_the_fused_operators() -> None:
    from cleftscore.benchmarks.speed import CONFIGS
    from cleftscore.benchmarks.step_cost import projection_step_ops

    names = {op["op"] for op in projection_step_ops(CONFIGS["t64"], 1, "fp16")}
    assert {"demod_act", "demod_act_backward", "scale_channels", "scale_channels_backward"} <= names
    assert "leaky_relu" not in names  # the synthesis layers no longer run it as a plain op


_INTERPRETED = textwrap.dedent(
    """
    import math, torch
    from cleftscore.gan.accel import fused as fz
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float16):
        for hw, noise_rows, clamp in (((5, 7), 3, 0.8), ((9, 33), 1, math.inf), ((16, 16), 0, 1.5)):
            n, c = 3, 5
            y = torch.randn((n, c, *hw)).to(dtype)
            d, b = torch.rand((n, c)) + 0.5, torch.randn((c,))
            noise = torch.randn((noise_rows, 1, *hw)) if noise_rows else None
            g = torch.randn((n, c, *hw)).to(dtype)
            tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-3, atol=2e-3)
            torch.testing.assert_close(fz.launch_demod_act(y, d, noise, b, clamp),
                                       fz._demod_act_reference(y, d, noise, b, clamp), **tol)
            want = fz._demod_act_backward_reference(g, y, d, noise, b, clamp)
            # channel groups: one (a loop over all 5), two (3 + 2 channels), five (one each)
            for min_programs in (1, 2 * n, 2048):
                got = fz.launch_demod_act_backward(g, y, d, noise, b, clamp, min_programs=min_programs)
                for a, e in zip(got, want):
                    assert a.shape == e.shape and a.dtype == e.dtype, (a.shape, e.shape, a.dtype, e.dtype)
                    torch.testing.assert_close(a.float(), e.float(), rtol=1e-3, atol=1e-3)
            s = torch.randn((n, c))
            for a, e in zip(fz.launch_scale_channels_backward(g, y, s), fz._scale_channels_backward_reference(g, y, s)):
                assert a.shape == e.shape and a.dtype == e.dtype
                torch.testing.assert_close(a.float(), e.float(), rtol=1e-3, atol=1e-3)
    # the GPU check's own cases (bfloat16, 1024-element blocks, shared noise, one channel group)
    assert all(fz._probe_case(torch.device("cpu"), *case) for case in fz._PROBE_CASES)
    # NaN stays NaN through the clamp, as in torch.clamp
    y = torch.tensor([[[[float("nan"), 1.0, -3.0, 5.0]]]])
    out = fz.launch_demod_act(y, torch.ones((1, 1)), None, torch.zeros((1,)), 2.0)
    assert out.isnan()[0, 0, 0, 0] and out[0, 0, 0, 1:].tolist() == [1.0, -0.6000000238418579, 2.0], out
    print("kernels agree")
    """
)


def test_triton_kernels_agree_with_the_reference_in_the_interpreter() -> None:
    # The CUDA kernels themselves, run by Triton's CPU interpreter (the launch code included):
    # block edges (maps that are not a multiple of the block), per-image, shared and no noise,
    # a binding and an absent clamp, float32 and float16, channel groups in the backward.
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1")
    src = str(Path(fz.__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _INTERPRETED], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "kernels agree" in proc.stdout


def test_triton_kernels_compile_for_a_hopper_gpu() -> None:
    # The real compiler (Triton to PTX to cubin for sm_90, the H100/H200), no GPU needed: it
    # rejects code that the interpreter above would run. Every variant the networks launch.
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from cleftscore.gan.accel import triton_kernels as K

    def build(fn, types: dict, consts: dict):
        sig = {name: ("constexpr" if name in consts else types[name]) for name in fn.arg_names}
        constexprs = {(i,): consts[name] for i, name in enumerate(fn.arg_names) if name in consts}
        kernel = triton.compile(ASTSource(fn, sig, constexprs), target=GPUTarget("cuda", 90, 32))
        assert kernel.asm.get("cubin"), fn.__name__

    f32 = "*fp32"
    for dtype in ("fp16", "bf16", "fp32"):
        p = "*" + dtype
        common = {"d_ptr": f32, "noise_ptr": f32, "b_ptr": f32, "C": "i32", "HW": "i32", "noise_stride_n": "i32",
                  "clamp": "fp32", "slope": "fp32"}  # fmt: skip
        for has_noise, has_clamp, block in ((True, True, 1024), (False, False, 16)):
            flags = {"HAS_NOISE": has_noise, "HAS_CLAMP": has_clamp, "BLOCK": block}
            build(K.demod_act_fwd, {**common, "y_ptr": p, "out_ptr": p}, flags)
            build(K.demod_act_bwd, {**common, "g_ptr": p, "y_ptr": p, "gy_ptr": p, "gd_part_ptr": f32,
                                    "gb_part_ptr": f32, "gnoise_ptr": f32, "NBLK": "i32", "C_PER": "i32"}, flags)  # fmt: skip
        build(K.scale_channels_bwd, {"g_ptr": p, "x_ptr": p, "s_ptr": f32, "gx_ptr": p, "gs_part_ptr": f32,
                                     "HW": "i32", "NBLK": "i32"}, {"BLOCK": 256})  # fmt: skip
