"""GPU checks (marker ``gpu``; skipped without CUDA): CUDA agrees with the CPU, reduced precision
stays close to float32 in batched inversion and adaptation, and the speed harness reports memory.

Run on a lent GPU machine by ``bench/gpu_smoke.sh``. Self-contained: no fixtures, no dlib, no
real weights (random-weight generators and a random LPIPS trunk).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

import numpy as np
import pytest
import torch

from cleftscore.gan.config import GeneratorConfig

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

#: Small architecture with float16 top blocks (32 and 64 px) and a clamp, as the FFHQ model.
T64 = GeneratorConfig(
    img_resolution=64, z_dim=64, w_dim=64, mapping_layers=2,
    channel_base=1024, channel_max=64, num_fp16_res=2, conv_clamp=256,
)  # fmt: skip


@contextlib.contextmanager
def _no_tf32():
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _generator(config: GeneratorConfig, device: str):
    from cleftscore.gan.networks import Generator

    G = Generator(config, generator=torch.Generator().manual_seed(0)).eval().requires_grad_(False)
    with torch.no_grad():  # non-zero noise strengths, so that the noise maps matter
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    return G.to(device)


def _case(G, n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((n, G.z_dim), generator=g)
    noises = [torch.randn((n, 1, r, r), generator=g) for _, r in G.synthesis.noise_layers()]
    return z, noises


def _cuda_case(G, n: int, seed: int):
    """A random LPIPS, pivots w [n, w_dim], noise maps and normalised targets, all on CUDA."""
    from cleftscore.perceptual import PerceptualDistance

    loss_fn = PerceptualDistance(vgg16_weights=None, random_trunk=True).cuda()
    z, noises = _case(G, n, seed=seed)
    z, noises = z.cuda(), [t.cuda() for t in noises]
    with torch.no_grad():
        w = G.mapping(z, None, truncation_psi=0.5)[:, 0]
        targets = G(z, truncation_psi=0.7, noise_mode="const", force_fp32=True)
        targets = targets / targets.abs().amax(dim=(1, 2, 3), keepdim=True)
    return loss_fn, w, noises, targets


@pytest.mark.parametrize("fused", [None, False])
def test_cuda_synthesis_matches_cpu_fp32(fused) -> None:
    G_cpu = _generator(T64, "cpu")
    G_gpu = _generator(T64, "cuda")
    z, noises = _case(G_cpu, 3)
    with torch.no_grad(), _no_tf32():
        ws = G_cpu.mapping(z, None, truncation_psi=0.7)
        ref = G_cpu.synthesis(ws, noise_mode="const", noise=noises, force_fp32=True, fused_modconv=fused)
        out = G_gpu.synthesis(
            ws.cuda(), noise_mode="const", noise=[t.cuda() for t in noises], force_fp32=True, fused_modconv=fused
        ).cpu()
    scale = float(ref.abs().max())
    assert torch.isfinite(out).all()
    assert float((out - ref).abs().max()) <= 1e-4 * max(scale, 1.0)


def test_batched_inversion_reduced_precision_close_to_fp32() -> None:
    from cleftscore.gan.invert import InversionSettings, invert
    from cleftscore.gan.wstats import w_stats

    G = _generator(T64, "cuda")
    loss_fn, _, _, targets = _cuda_case(G, 4, seed=3)
    stats = w_stats(G, samples=500)
    base = InversionSettings(steps=10, precision="fp32")
    out = {}
    for precision in ("fp32", "auto", "bf16"):
        res = invert(
            G, targets, settings=dataclasses.replace(base, precision=precision), loss_fn=loss_fn,
            generator=torch.Generator(device="cuda").manual_seed(0), w_stats=stats,
        )  # fmt: skip
        assert torch.isfinite(res.images).all() and torch.isfinite(res.w).all()
        assert res.losses.shape == (4, 10)
        out[precision] = res
    ref = out["fp32"].images
    spread = float((ref - targets).abs().mean())  # how far the projection still is from the targets
    for precision in ("auto", "bf16"):
        diff = float((out[precision].images - ref).abs().mean())
        assert diff <= 0.1 * spread, (precision, diff, spread)
        assert abs(float(out[precision].losses[:, -1].mean()) / float(out["fp32"].losses[:, -1].mean()) - 1) < 0.2


def test_batched_adaptation_reduced_precision_close_to_fp32() -> None:
    from cleftscore.gan.adapt import AdaptSettings, adapt

    G = _generator(T64, "cuda")
    loss_fn, w, noises, targets = _cuda_case(G, 3, seed=4)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    base = AdaptSettings(steps=6, precision="fp32", engine="vmap")
    ref = adapt(G, w, noises, targets, settings=base, loss_fn=loss_fn)
    start = G.synthesis(w.unsqueeze(1).expand(-1, G.num_ws, -1), noise=noises, force_fp32=True)
    moved = float((ref.images - start).abs().mean())
    assert moved > 0
    for precision in ("auto", "bf16"):
        res = adapt(G, w, noises, targets, settings=dataclasses.replace(base, precision=precision), loss_fn=loss_fn)
        assert torch.isfinite(res.images).all()
        assert float((res.images - ref.images).abs().mean()) <= 0.2 * moved + 1e-3
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())


@pytest.mark.parametrize("engine", ["vmap", "loop"])
def test_cuda_graph_adaptation_equals_ordinary_steps(engine: str) -> None:
    from cleftscore.gan.adapt import AdaptSettings, adapt

    G = _generator(T64, "cuda")
    loss_fn, w, noises, targets = _cuda_case(G, 2, seed=6)
    start = G.synthesis(w.unsqueeze(1).expand(-1, G.num_ws, -1), noise=noises, force_fp32=True)
    out = {}
    with _no_tf32():
        for graph in (False, True):
            settings = AdaptSettings(steps=12, precision="fp32", engine=engine, cuda_graph=graph)
            out[graph] = adapt(G, w, noises, targets, settings=settings, loss_fn=loss_fn)
    assert out[True].step_mode == "cuda_graph" and out[False].step_mode == "eager"
    moved = float((out[False].images - start).abs().mean())
    assert moved > 0
    # Replays that reused stale state (step counter, Adam's step) would land elsewhere.
    assert float((out[True].images - out[False].images).abs().mean()) <= 0.02 * moved
    np.testing.assert_allclose(out[True].losses, out[False].losses, rtol=1e-3)


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_fused_kernels_compile_and_match_plain_ops_on_the_gpu(dtype: str) -> None:
    # The Triton kernels pass their own check on this GPU, and a whole synthesis (float16 top
    # blocks, or everything under bf16 autocast) with them equals the plain-op synthesis,
    # gradients to w and the noise maps included.
    from cleftscore.gan.accel import fused as fz
    from cleftscore.gan.invert import autocast_context

    assert fz._probe(torch.device("cuda")), "the fused kernels failed their check on this GPU (see the log)"
    G = _generator(T64, "cuda")
    z, noises = _case(G, 3, seed=4)
    z, noises = z.cuda(), [t.cuda() for t in noises]
    probe = torch.randn((3, 3, 64, 64), generator=torch.Generator().manual_seed(2)).cuda()
    amp = torch.bfloat16 if dtype == "bf16" else None

    def run(enabled: bool):
        ws = G.mapping(z, None).detach().requires_grad_(True)
        ns = [t.clone().requires_grad_(True) for t in noises]
        with autocast_context(torch.device("cuda"), amp):
            img = G.synthesis(ws, noise_mode="const", noise=ns, force_fp32=amp is not None, fused_modconv=False,
                              kernels=fz.FUSED_KERNELS if enabled else None)  # fmt: skip
        return img.float(), torch.autograd.grad((img.float() * probe).sum(), [ws, *ns])

    (a, ga), (b, gb) = run(True), run(False)
    tol = 2e-2 if dtype == "fp16" else 1e-1
    assert (a - b).abs().max() <= tol * max(1.0, float(b.abs().max()))
    for x, y in zip(ga, gb, strict=True):
        assert torch.isfinite(x).all()
        assert (x - y).abs().max() <= tol * float(y.abs().max()) + 1e-6


def test_speed_harness_reports_cuda_memory() -> None:
    from cleftscore.benchmarks.speed import run_speed

    report = run_speed(T64, device="cuda", batch_sizes=(1, 2), steps=2, warmup=1, precisions=("auto",),
                       unfused_too=True)  # fmt: skip
    assert {r["mode"] for r in report["timings"]} >= {"fast", "fast-unfused"}
    assert report["summary"]["without_fused_kernels"]["s_per_photo_batched"] > 0
    assert report["environment"]["device_name"]
    for row in report["timings"]:
        assert row["error"] is None, row
        if row["mode"] == "fast" and row["stage"] == "projection":
            assert row["step_mode"] == "cuda_graph", row  # the shipped path replays graphs
        assert row["ms_per_step"] > 0 and row["peak_memory_mib"] > 0
    assert report["summary"]["speedup_batched"] > 0
    diff = report["image_difference"][0]
    assert diff["resolved_precision"] == "fp16" and diff["finite"]
    assert diff["max_abs_diff"] <= 0.05 * max(diff["fp32_image_abs_max"], 1.0)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graph_projection_equals_ordinary_steps(precision: str) -> None:
    from cleftscore.gan.invert import InversionSettings, invert
    from cleftscore.gan.wstats import w_stats

    G = _generator(T64, "cuda")
    loss_fn, _, _, targets = _cuda_case(G, 2, seed=5)
    stats = w_stats(G, samples=500)
    out = {}
    old = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True  # Adam's first steps amplify atomics' rounding noise
    try:
        with _no_tf32():
            for graph in (False, True):
                settings = InversionSettings(steps=40, precision=precision, cuda_graph=graph)
                out[graph] = invert(G, targets, settings=settings, loss_fn=loss_fn,
                                    generator=torch.Generator(device="cuda").manual_seed(0), w_stats=stats)  # fmt: skip
    finally:
        torch.backends.cudnn.deterministic = old
    assert out[True].step_mode == "cuda_graph" and out[False].step_mode == "eager"
    # A replay that reused a stale value (learning rate, w noise, step counter) would be far off.
    np.testing.assert_allclose(out[True].losses, out[False].losses, rtol=1e-2)
    moved = float((out[False].w - stats[0]).norm())
    assert moved > 0
    assert float((out[True].w - out[False].w).norm()) <= 1e-2 * moved


@pytest.mark.skipif(
    os.environ.get("CLEFTSCORE_GPU_COMPILE_TEST") != "1",
    reason="compiling takes minutes: set CLEFTSCORE_GPU_COMPILE_TEST=1 (SMOKE_COMPILE=1 bash bench/gpu_smoke.sh)",
)
def test_compiled_projection_replays_as_a_graph_and_matches_plain(caplog) -> None:
    import logging

    from cleftscore.gan.invert import InversionSettings, invert
    from cleftscore.gan.wstats import w_stats

    G = _generator(T64, "cuda")
    loss_fn, _, _, targets = _cuda_case(G, 2, seed=7)
    stats = w_stats(G, samples=500)
    base = InversionSettings(steps=30, precision="fp16")
    plain = invert(G, targets, settings=base, loss_fn=loss_fn, generator=torch.Generator(device="cuda").manual_seed(0),
                   w_stats=stats)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="cleftscore.gan.steps"):
        comp = invert(G, targets, settings=dataclasses.replace(base, compile=True), loss_fn=loss_fn,
                      generator=torch.Generator(device="cuda").manual_seed(0), w_stats=stats)  # fmt: skip
    fallbacks = [r.getMessage() for r in caplog.records if r.name == "cleftscore.gan.steps"]
    assert not fallbacks, fallbacks
    assert comp.step_mode == "cuda_graph"
    moved = float((plain.w - stats[0]).norm())
    assert float((comp.w - plain.w).norm()) <= 2e-2 * moved
    np.testing.assert_allclose(comp.losses, plain.losses, rtol=2e-2)
