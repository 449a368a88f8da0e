"""Tests of the LPIPS wrapper (random trunk; real-format VGG16 files made by the test)."""

from __future__ import annotations

import pytest
import torch

from cleftscore.errors import CheckpointError, WeightsMissingError
from cleftscore.perceptual import PerceptualDistance, area_downsample, load_vgg16_state_dict


@pytest.fixture(scope="module")
def lp() -> PerceptualDistance:
    return PerceptualDistance(vgg16_weights=None, random_trunk=True, generator=torch.Generator().manual_seed(1))


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, size, size), generator=g) * 2 - 1


def _fake_vgg16_state(path, *, drop: str | None = None, bad_shape: str | None = None) -> dict:
    """A state dict with torchvision's VGG16 keys and shapes, written cheaply.

    The big layers are stride-0 expansions of one number (torch.save keeps only the one-element
    storage), so the file is small; the first conv gets real random values to check copying.
    """
    import torchvision

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.vgg16(weights=None).state_dict().items()}
    g = torch.Generator().manual_seed(3)
    state = {k: torch.full((1,), 0.01).expand(s) for k, s in shapes.items()}
    state["features.0.weight"] = torch.randn(shapes["features.0.weight"], generator=g)
    state["features.0.bias"] = torch.randn(shapes["features.0.bias"], generator=g)
    if drop:
        del state[drop]
    if bad_shape:
        state[bad_shape] = torch.zeros(3)
    torch.save(state, path)
    return state


def test_zero_distance_to_itself_and_symmetry(lp: PerceptualDistance) -> None:
    x, y = _images(3, 48, 0), _images(3, 48, 1)
    d_xy = lp(x, y)
    assert d_xy.shape == (3,)
    assert torch.all(d_xy > 0)
    torch.testing.assert_close(d_xy, lp(y, x))
    torch.testing.assert_close(lp(x, x), torch.zeros(3), atol=1e-7, rtol=0)


def test_more_change_is_farther(lp: PerceptualDistance) -> None:
    x = _images(1, 48, 0)
    noise = _images(1, 48, 5)
    assert lp(x, x + 0.05 * noise) < lp(x, x + 0.5 * noise)


def test_spatial_map_shape_at_input_resolution() -> None:
    lp_s = PerceptualDistance(vgg16_weights=None, random_trunk=True, spatial=True, resize_to=32)
    x, y = _images(2, 64, 0), _images(2, 64, 1)
    m = lp_s(x, y)
    assert m.shape == (2, 1, 64, 64)
    assert torch.all(m >= 0)
    torch.testing.assert_close(lp_s(x, x), torch.zeros_like(m), atol=1e-7, rtol=0)


def test_features_path_matches_forward(lp: PerceptualDistance) -> None:
    x, y = _images(2, 40, 0), _images(2, 40, 1)
    torch.testing.assert_close(lp.distance_to_features(lp.features(x), y), lp(x, y))


def test_gradients_flow_to_input_not_network(lp: PerceptualDistance) -> None:
    x = _images(1, 32, 0)
    y = _images(1, 32, 1).requires_grad_(True)
    lp(x, y).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in lp.parameters())


def test_area_downsample_only_when_larger() -> None:
    x = _images(1, 64, 0)
    assert area_downsample(x, size=64) is x
    assert area_downsample(x, size=None) is x
    small = area_downsample(x, size=32)
    assert small.shape == (1, 3, 32, 32)
    torch.testing.assert_close(small[0, :, 0, 0], x[0, :, :2, :2].mean(dim=(1, 2)))


def test_random_trunk_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a = PerceptualDistance(vgg16_weights=None, random_trunk=True, generator=torch.Generator().manual_seed(7))
    b = PerceptualDistance(vgg16_weights=None, random_trunk=True, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.random.get_rng_state(), state)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_missing_weights_is_an_error_with_instructions() -> None:
    with pytest.raises(WeightsMissingError, match="cleftscore weights fetch vgg16"):
        PerceptualDistance(vgg16_weights=None)


def test_bad_inputs() -> None:
    lp = PerceptualDistance(vgg16_weights=None, random_trunk=True)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        lp(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="same shape"):
        lp(torch.zeros(1, 3, 32, 32), torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="not both"):
        PerceptualDistance(vgg16_weights="x.pth", random_trunk=True)


def test_loads_vgg16_state_dict_file(tmp_path) -> None:
    path = tmp_path / "vgg16-397923af.pth"
    state = _fake_vgg16_state(path)
    lp = PerceptualDistance(vgg16_weights=path)
    conv0 = lp.net.net.slice1[0]
    assert torch.equal(conv0.weight, state["features.0.weight"])
    assert torch.equal(conv0.bias, state["features.0.bias"])
    conv28 = getattr(lp.net.net.slice5, "28")
    assert torch.all(conv28.weight == 0.01)
    # the bundled LPIPS heads are loaded (non-negative learned weights, not random init)
    assert all(torch.all(lin.model[1].weight >= 0) for lin in lp.net.lins)
    x, y = _images(1, 32, 0), _images(1, 32, 1)
    assert torch.isfinite(lp(x, y)).all()


@pytest.mark.parametrize("kind", ["missing_key", "bad_shape", "garbage", "not_a_dict"])
def test_wrong_vgg16_file_is_a_checkpoint_error(tmp_path, kind: str) -> None:
    path = tmp_path / "vgg.pth"
    if kind == "missing_key":
        _fake_vgg16_state(path, drop="features.28.weight")
    elif kind == "bad_shape":
        _fake_vgg16_state(path, bad_shape="features.2.weight")
    elif kind == "garbage":
        path.write_bytes(b"this is not a checkpoint")
    else:
        torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="vgg.pth"):
        load_vgg16_state_dict(path)
    with pytest.raises(CheckpointError):
        PerceptualDistance(vgg16_weights=path)


def test_absent_vgg16_file_is_weights_missing(tmp_path) -> None:
    with pytest.raises(WeightsMissingError, match="--vgg16"):
        PerceptualDistance(vgg16_weights=tmp_path / "nope.pth")
