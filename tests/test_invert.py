"""Tests of the batched StyleGAN2 projector on the tiny golden generator t32."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from cleftscore.gan.invert import (
    InversionSettings,
    invert,
    lr_schedule,
    noise_regularizer,
    resolve_precision,
)
from cleftscore.gan.wstats import w_stats
from conftest import golden_dir_for

SHORT = InversionSettings(steps=12, loss="mse", w_avg_samples=500)


@pytest.fixture(scope="module")
def G():
    from cleftscore.gan.checkpoints import load_generator

    return load_generator(golden_dir_for("t32") / "t32_state_dict.npz")


@pytest.fixture(scope="module")
def stats(G):
    return w_stats(G, samples=500)


@pytest.fixture(scope="module")
def targets(G) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        img = G(torch.randn((4, G.z_dim), generator=g), truncation_psi=0.7, noise_mode="const", force_fp32=True)
    return (img / img.abs().amax()).clamp(-1, 1)


def _init_noises(G, n: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn((n, 1, r, r), generator=g) for _, r in G.synthesis.noise_layers()]


def test_lr_and_noise_schedule() -> None:
    s = InversionSettings(steps=1000)
    assert lr_schedule(0, 1000, s) == (0.0, pytest.approx(0.05))
    lr, nf = lr_schedule(500, 1000, s)
    assert lr == pytest.approx(0.1) and nf == pytest.approx(0.05 * (1 - 0.5 / 0.75) ** 2)
    assert lr_schedule(25, 1000, s)[0] == pytest.approx(0.05)  # half-way up the ramp-up
    assert lr_schedule(875, 1000, s)[0] == pytest.approx(0.05)  # half-way down the cosine
    assert lr_schedule(800, 1000, s)[1] == 0.0


def test_noise_regularizer_per_image_and_levels() -> None:
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn((3, 1, r, r), generator=g) for r in (4, 16, 32)]
    both = noise_regularizer(maps)
    assert both.shape == (3,)
    for i in range(3):
        torch.testing.assert_close(both[i : i + 1], noise_regularizer([m[i : i + 1] for m in maps]))
    # a constant map is perfectly correlated: each level contributes 2 * c^4; 16 -> 16, 8 = 2 levels
    const = [torch.full((1, 1, 16, 16), 2.0)]
    torch.testing.assert_close(noise_regularizer(const), torch.tensor([2 * 2 * 16.0]))


def _regularizer_by_definition(maps: list[torch.Tensor]) -> torch.Tensor:
    """One map at a time, one pyramid level at a time, as the official projector loops."""
    total = torch.zeros(maps[0].shape[0], dtype=torch.float64)
    for m in maps:
        for c in range(m.shape[1]):
            x = m[:, c : c + 1].double()
            while True:
                total += (x * torch.roll(x, 1, dims=3)).mean(dim=(1, 2, 3)) ** 2
                total += (x * torch.roll(x, 1, dims=2)).mean(dim=(1, 2, 3)) ** 2
                if x.shape[2] <= 8:
                    break
                x = torch.nn.functional.avg_pool2d(x, 2)
    return total


@pytest.mark.parametrize(
    "layout",
    [
        [(1, 4), (1, 16), (1, 32)],  # single maps, gaps in the resolution chain
        [(1, 4), (2, 8), (2, 16), (2, 32), (2, 64)],  # the generator's layout, stacked per resolution
        [(3, 64)],  # one stack alone: its pooled levels 32, 16, 8 hold no other maps
        [(1, 6), (2, 12), (1, 8)],  # not powers of two
    ],
)
def test_noise_regularizer_equals_per_map_definition(layout) -> None:
    g = torch.Generator().manual_seed(len(layout))
    maps = [torch.randn((2, c, r, r), generator=g) for c, r in layout]
    got = noise_regularizer(maps)
    torch.testing.assert_close(got.double(), _regularizer_by_definition(maps), rtol=1e-5, atol=1e-9)


def test_noise_regularizer_rejects_bad_maps() -> None:
    with pytest.raises(ValueError, match="at least one"):
        noise_regularizer([])
    with pytest.raises(ValueError, match="square"):
        noise_regularizer([torch.zeros(1, 1, 8, 4)])


def test_settings_validation_and_json() -> None:
    with pytest.raises(ValueError, match="loss"):
        InversionSettings(loss="l1")
    with pytest.raises(ValueError, match="precision"):
        InversionSettings(precision="int8")
    with pytest.raises(ValueError, match="steps"):
        InversionSettings(steps=0)
    d = dataclasses.asdict(InversionSettings())
    assert json.loads(json.dumps(d)) == d


def test_precision_mapping() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu) == (True, None)
    assert resolve_precision("auto", cuda) == (False, None)
    assert resolve_precision("bf16", cpu) == (True, torch.bfloat16)
    assert resolve_precision("fp16", cpu) == (False, None)


def test_inversion_result_shapes_and_consistency(G, targets, stats) -> None:
    res = invert(
        G, targets[:2], settings=SHORT, loss_fn=None, generator=torch.Generator().manual_seed(0), w_stats=stats
    )
    assert res.w.shape == (2, G.w_dim) and res.images.shape == (2, 3, 32, 32)
    assert res.losses.shape == (2, SHORT.steps) and res.losses.dtype == np.float32 and res.steps_run == SHORT.steps
    assert [tuple(t.shape) for t in res.noises] == [(2, 1, r, r) for _, r in G.synthesis.noise_layers()]
    for t in res.noises:  # renormalised after every step
        torch.testing.assert_close(t.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
        torch.testing.assert_close(t.square().mean(dim=(1, 2, 3)), torch.ones(2), atol=1e-4, rtol=0)
    with torch.no_grad():
        again = G.synthesis(res.w.unsqueeze(1).expand(-1, G.num_ws, -1), noise=res.noises, force_fp32=True)
    torch.testing.assert_close(res.images, again)
    assert np.all(res.losses[:, -1] < res.losses[:, 0])


def test_batched_equals_separate_runs(G, targets, stats) -> None:
    settings = dataclasses.replace(SHORT, initial_noise_factor=0.0)  # w noise draws differ by batch shape
    noises = _init_noises(G, 4, seed=11)
    batch = invert(G, targets, settings=settings, loss_fn=None, w_stats=stats, init_noises=noises)
    for i in range(4):
        one = invert(G, targets[i : i + 1], settings=settings, loss_fn=None, w_stats=stats,
                     init_noises=[t[i : i + 1] for t in noises])  # fmt: skip
        torch.testing.assert_close(batch.w[i : i + 1], one.w, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(batch.images[i : i + 1], one.images, atol=2e-4, rtol=1e-3)
        np.testing.assert_allclose(batch.losses[i : i + 1], one.losses, rtol=1e-3, atol=1e-6)
        for a, b in zip(batch.noises, one.noises, strict=True):
            torch.testing.assert_close(a[i : i + 1], b, atol=2e-4, rtol=1e-3)


def test_per_image_generators_make_results_batch_independent(G, targets, stats) -> None:
    # With one generator per image (w noise included), an image's run does not depend on its
    # batch: the pipeline relies on this so a photo scores the same alone or with others.
    def gens(seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    batch = invert(G, targets[:3], settings=SHORT, loss_fn=None, w_stats=stats, generator=gens([7, 8, 9]))
    alone = invert(G, targets[1:2], settings=SHORT, loss_fn=None, w_stats=stats, generator=gens([8]))
    # Float rounding of batched convolutions only (~1e-4), far below what other draws give.
    torch.testing.assert_close(batch.w[1:2], alone.w, atol=5e-4, rtol=1e-3)
    torch.testing.assert_close(batch.images[1:2], alone.images, atol=1e-2, rtol=1e-2)
    other = invert(G, targets[1:2], settings=SHORT, loss_fn=None, w_stats=stats, generator=gens([9]))
    assert (other.w - alone.w).abs().max() > 20 * (batch.w[1:2] - alone.w).abs().max()
    with pytest.raises(ValueError, match="one per image"):
        invert(G, targets[:2], settings=SHORT, loss_fn=None, w_stats=stats, generator=gens([1]))


def test_cpu_runs_are_bit_identical(G, targets, stats) -> None:
    runs = [
        invert(G, targets[:2], settings=SHORT, loss_fn=None, generator=torch.Generator().manual_seed(3), w_stats=stats)
        for _ in range(2)
    ]
    assert torch.equal(runs[0].w, runs[1].w)
    assert torch.equal(runs[0].images, runs[1].images)
    assert np.array_equal(runs[0].losses, runs[1].losses)
    other = invert(
        G, targets[:2], settings=SHORT, loss_fn=None, generator=torch.Generator().manual_seed(4), w_stats=stats
    )
    assert not torch.equal(runs[0].w, other.w)


def test_generator_untouched(G, targets, stats) -> None:
    before = {k: v.clone() for k, v in G.state_dict().items()}
    flags = [p.requires_grad for p in G.parameters()]
    invert(G, targets[:1], settings=SHORT, loss_fn=None, w_stats=stats)
    after = G.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in G.parameters()] == flags
    assert all(p.grad is None for p in G.parameters())


def test_early_stop_checks_every_patience_steps(G, targets, stats) -> None:
    s = dataclasses.replace(SHORT, steps=50, early_stop=True, early_stop_patience=4, early_stop_tol=100.0)
    res = invert(G, targets[:1], settings=s, loss_fn=None, w_stats=stats)
    assert res.steps_run == 8 and res.losses.shape == (1, 8)


def test_progress_called_each_step(G, targets, stats) -> None:
    seen: list[tuple[int, int]] = []
    invert(G, targets[:1], settings=dataclasses.replace(SHORT, steps=3), loss_fn=None, w_stats=stats,
           progress=lambda a, b: seen.append((a, b)))  # fmt: skip
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_lpips_loss_and_bf16(G, targets, stats) -> None:
    from cleftscore.perceptual import PerceptualDistance

    lp = PerceptualDistance(vgg16_weights=None, random_trunk=True)
    s = InversionSettings(steps=3, loss="lpips", precision="bf16", w_avg_samples=500)
    res = invert(G, targets[:1], settings=s, loss_fn=lp, w_stats=stats)
    assert np.isfinite(res.losses).all() and torch.isfinite(res.images).all()
    with pytest.raises(ValueError, match="loss_fn"):
        invert(G, targets[:1], settings=s, loss_fn=None, w_stats=stats)


def test_bad_targets(G) -> None:
    with pytest.raises(ValueError, match=r"\[N, 3, 32, 32\]"):
        invert(G, torch.zeros(1, 3, 16, 16), settings=SHORT, loss_fn=None)


def test_w_stats_matches_definition(G) -> None:
    w_avg, w_std = w_stats(G, samples=300, seed=1, chunk=128)
    z = torch.from_numpy(np.random.RandomState(1).randn(300, G.z_dim)).float()
    with torch.no_grad():
        w = G.mapping(z, None)[:, 0].double()
    torch.testing.assert_close(w_avg.double(), w.mean(0), atol=1e-5, rtol=1e-5)
    assert w_std == pytest.approx(float(((w - w.mean(0)).square().sum() / 300).sqrt()), rel=1e-5)
    assert w_stats(G, samples=300, seed=1)[1] == w_std


def test_fp16_blocks_keep_gradients_finite() -> None:
    """t64 with its real settings (two float16 resolutions, clamp 256); MSE used to overflow."""
    from cleftscore.gan.config import GeneratorConfig
    from cleftscore.gan.networks import Generator

    cfg = GeneratorConfig(z_dim=64, w_dim=64, img_resolution=64, mapping_layers=2, channel_base=1024,
                          channel_max=64, num_fp16_res=2, conv_clamp=256)  # fmt: skip
    with np.load(golden_dir_for("t64") / "t64_state_dict.npz") as data:
        state = {k: torch.from_numpy(np.array(data[k])) for k in data.files}
    G16 = Generator(cfg)
    G16.load_state_dict(state)
    G16.eval().requires_grad_(False)
    with torch.no_grad():
        tg = G16(torch.randn((1, 64), generator=torch.Generator().manual_seed(0)), noise_mode="const", force_fp32=True)
    tg = (tg / tg.abs().amax()).clamp(-1, 1)
    s = InversionSettings(steps=4, loss="mse", precision="fp16", w_avg_samples=200)
    res = invert(G16, tg, settings=s, loss_fn=None)
    assert torch.isfinite(res.w).all() and np.isfinite(res.losses).all()
    assert res.losses[0, -1] < res.losses[0, 0]


def test_compiled_step_gives_the_same_projection(G, targets, stats, monkeypatch) -> None:
    # The compiled forward must trace through the whole objective (synthesis with noise views,
    # LPIPS-free MSE, regulariser) and give the eager numbers. A cheap backend (graph capture
    # and autograd tracing, no code generation) stands in for inductor.
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, backend="aot_eager", **kw))
    settings = dataclasses.replace(SHORT, steps=6)
    eager = invert(G, targets[:2], settings=settings, loss_fn=None, w_stats=stats)
    comp = invert(G, targets[:2], settings=dataclasses.replace(settings, compile=True), loss_fn=None, w_stats=stats)
    torch.testing.assert_close(comp.w, eager.w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(comp.losses, eager.losses, rtol=1e-4)


def test_channels_last_gives_the_same_projection_and_leaves_G_alone(G, targets, stats) -> None:
    settings = dataclasses.replace(SHORT, steps=6)
    ref = invert(G, targets[:2], settings=settings, loss_fn=None, w_stats=stats)
    nhwc = invert(
        G, targets[:2], settings=dataclasses.replace(settings, channels_last=True), loss_fn=None, w_stats=stats
    )
    torch.testing.assert_close(nhwc.w, ref.w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(nhwc.losses, ref.losses, rtol=1e-4)
    # The NHWC copy is private: the caller's generator keeps its layout.
    assert all(p.is_contiguous() for p in G.parameters())


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("cc") is None, reason="inductor needs a C++ compiler")
def test_compiled_step_with_the_real_compiler(caplog) -> None:
    # Inductor itself, on a two-block generator (compiling t32 took almost two minutes on two
    # cores). Its backward donates saved buffers: a compile probe that retained the graph broke
    # it and silently fell back to the plain step, which the stand-in backend cannot show.
    import logging

    from cleftscore.gan.config import GeneratorConfig
    from cleftscore.gan.networks import Generator

    cfg = GeneratorConfig(img_resolution=8, z_dim=8, w_dim=8, mapping_layers=1, channel_base=64, channel_max=8,
                          num_fp16_res=0, conv_clamp=256)  # fmt: skip
    G8 = Generator(cfg, generator=torch.Generator().manual_seed(0)).eval().requires_grad_(False)
    targets8 = torch.rand((2, 3, 8, 8), generator=torch.Generator().manual_seed(1)) * 2 - 1
    stats8 = (torch.zeros(8), 1.0)
    settings = dataclasses.replace(SHORT, steps=3)
    eager = invert(G8, targets8, settings=settings, loss_fn=None, w_stats=stats8)
    with caplog.at_level(logging.WARNING, logger="cleftscore.gan.steps"):
        comp = invert(G8, targets8, settings=dataclasses.replace(settings, compile=True), loss_fn=None, w_stats=stats8)
    fallbacks = [r.getMessage() for r in caplog.records if r.name == "cleftscore.gan.steps"]
    assert not fallbacks, fallbacks
    torch.testing.assert_close(comp.w, eager.w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(comp.losses, eager.losses, rtol=1e-4)
