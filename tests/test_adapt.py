"""Tests of per-photo generator adaptation (pivotal tuning) on the tiny golden generator t32."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from cleftscore.gan.adapt import AdaptSettings, adapt
from conftest import golden_dir_for


@pytest.fixture(scope="module")
def G():
    from cleftscore.gan.checkpoints import load_generator

    return load_generator(golden_dir_for("t32") / "t32_state_dict.npz")


@pytest.fixture(scope="module")
def case(G):
    g = torch.Generator().manual_seed(2)
    n = 3
    w = G.mapping(torch.randn((n, G.z_dim), generator=g))[:, 0].detach()
    noises = [torch.randn((n, 1, r, r), generator=g) for _, r in G.synthesis.noise_layers()]
    targets = torch.rand((n, 3, 32, 32), generator=g) * 2 - 1
    return w, noises, targets


MSE = AdaptSettings(steps=4, lpips_weight=0.0, lr=3e-3)


def test_caller_generator_never_changes(G, case) -> None:
    w, noises, targets = case
    G.requires_grad_(True)  # even a trainable caller's generator is left alone
    try:
        before = {k: v.clone() for k, v in G.state_dict().items()}
        for engine in ("vmap", "loop"):
            adapt(G, w, noises, targets, settings=dataclasses.replace(MSE, engine=engine), loss_fn=None)
        after = G.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert all(p.grad is None for p in G.parameters())
        assert all(p.requires_grad for p in G.parameters())
        assert not G.training
    finally:
        G.requires_grad_(False)


def test_snapshots_and_losses(G, case) -> None:
    w, noises, targets = case
    s = dataclasses.replace(MSE, snapshot_steps=(0, 2, 4))
    res = adapt(G, w, noises, targets, settings=s, loss_fn=None)
    assert sorted(res.snapshots) == [0, 2, 4]
    assert res.images.shape == (3, 3, 32, 32) and res.losses.shape == (3, 4)
    with torch.no_grad():
        start = G.synthesis(w.unsqueeze(1).expand(-1, G.num_ws, -1), noise=noises, force_fp32=True)
    torch.testing.assert_close(res.snapshots[0], start, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.snapshots[4], res.images)
    assert not torch.allclose(res.snapshots[2], start)
    mse0 = (start - targets).square().mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(res.losses[:, 0], mse0, rtol=1e-5)
    assert np.all((res.images - targets).square().mean(dim=(1, 2, 3)).numpy() < mse0)


def test_vmap_equals_per_photo_loop(G, case) -> None:
    w, noises, targets = case
    a = adapt(G, w, noises, targets, settings=dataclasses.replace(MSE, engine="vmap"), loss_fn=None)
    b = adapt(G, w, noises, targets, settings=dataclasses.replace(MSE, engine="loop"), loss_fn=None)
    torch.testing.assert_close(a.images, b.images, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-4, atol=1e-6)


def test_batch_is_per_photo(G, case) -> None:
    w, noises, targets = case
    full = adapt(G, w, noises, targets, settings=MSE, loss_fn=None)
    one = adapt(G, w[1:2], [t[1:2] for t in noises], targets[1:2], settings=MSE, loss_fn=None)
    torch.testing.assert_close(full.images[1:2], one.images, atol=1e-4, rtol=1e-4)


def test_lpips_term_and_per_layer_w(G, case) -> None:
    from cleftscore.perceptual import PerceptualDistance

    w, noises, targets = case
    lp = PerceptualDistance(vgg16_weights=None, random_trunk=True)
    s = AdaptSettings(steps=2)
    res = adapt(
        G, w[:1].unsqueeze(1).expand(-1, G.num_ws, -1), [t[:1] for t in noises], targets[:1], settings=s, loss_fn=lp
    )
    with torch.no_grad():
        start = G.synthesis(w[:1].unsqueeze(1).expand(-1, G.num_ws, -1), noise=[t[:1] for t in noises], force_fp32=True)
    expected = (start - targets[:1]).square().mean().item() + lp(start, targets[:1]).item()
    assert res.losses[0, 0] == pytest.approx(expected, rel=1e-4)


def test_validation(G, case) -> None:
    w, noises, targets = case
    with pytest.raises(ValueError, match="loss_fn"):
        adapt(G, w, noises, targets, settings=AdaptSettings(steps=1), loss_fn=None)
    with pytest.raises(ValueError, match="snapshot_steps"):
        AdaptSettings(steps=5, snapshot_steps=(6,))
    with pytest.raises(ValueError, match="noise"):
        adapt(G, w, noises[:-1], targets, settings=MSE, loss_fn=None)
    with pytest.raises(ValueError, match="w must be"):
        adapt(G, w[:2], noises, targets, settings=MSE, loss_fn=None)
    d = dataclasses.asdict(AdaptSettings(snapshot_steps=(0, 25, 50)))
    assert json.loads(json.dumps(d))["snapshot_steps"] == [0, 25, 50]
