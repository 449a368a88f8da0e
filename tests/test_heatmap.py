"""Tests of cleftscore.heatmap: colour transform, difference maps, erosion."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cleftscore.heatmap import (
    DifferenceSettings,
    difference_map,
    energy,
    erode,
    lpips_map,
    pse_map,
    ssim_map,
    to_colorspace,
)


def _rgb(r, g, b):
    return np.array([[[r, g, b]]], dtype=np.uint8)


@pytest.mark.parametrize(
    ("rgb", "ycc"),
    [
        ((255, 255, 255), (235.0, 128.0, 128.0)),
        ((0, 0, 0), (16.0, 128.0, 128.0)),
        ((255, 0, 0), (81.481, 90.203, 240.0)),
        ((0, 255, 0), (144.553, 53.797, 34.214)),
        ((0, 0, 255), (40.966, 240.0, 109.786)),
    ],
)
def test_ycbcr_of_pure_colours_matches_bt601(rgb, ycc):
    out = to_colorspace(_rgb(*rgb), colorspace="ycbcr")
    assert out.shape == (1, 1, 3) and out.dtype == np.float64
    np.testing.assert_allclose(out[0, 0], ycc, atol=0.01)


def test_float_and_uint8_inputs_agree_and_rgb_is_0_255():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    a = to_colorspace(img, colorspace="ycbcr")
    b = to_colorspace(img / 255.0, colorspace="ycbcr")
    np.testing.assert_allclose(a, b, atol=1e-9)
    np.testing.assert_allclose(to_colorspace(img, colorspace="rgb"), img.astype(float))


def test_input_validation_messages():
    with pytest.raises(ValueError, match=r"float images must be in \[0, 1\]"):
        to_colorspace(np.full((2, 2, 3), 200.0))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) RGB image, got shape \(2, 2\)"):
        to_colorspace(np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="uint8 .* or floating point .* got dtype int64"):
        to_colorspace(np.zeros((2, 2, 3), np.int64))
    with pytest.raises(ValueError, match="colorspace must be one of ycbcr, rgb, got 'hsv'"):
        to_colorspace(np.zeros((2, 2, 3), np.uint8), colorspace="hsv")
    with pytest.raises(ValueError, match="same shape"):
        pse_map(np.zeros((2, 2, 3), np.uint8), np.zeros((3, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="at least 7 x 7"):
        ssim_map(np.zeros((5, 9, 3), np.uint8), np.zeros((5, 9, 3), np.uint8))
    with pytest.raises(ValueError, match="erosion size must be an integer >= 0"):
        erode(np.zeros((3, 3)), size=-1)
    with pytest.raises(ValueError, match="metric must be one of pse, ssim, lpips"):
        DifferenceSettings(metric="mse")
    with pytest.raises(ValueError, match="needs lpips_distance"):
        difference_map(
            np.zeros((8, 8, 3), np.uint8),
            np.zeros((8, 8, 3), np.uint8),
            settings=DifferenceSettings(metric="lpips"),
        )


def test_pse_of_hand_arrays():
    a = np.zeros((1, 2, 3), np.uint8)
    b = np.zeros((1, 2, 3), np.uint8)
    b[0, 0] = (10, 0, 0)
    b[0, 1] = (0, 3, 4)
    rgb = pse_map(a, b, colorspace="rgb")
    assert rgb.dtype == np.float32 and rgb.shape == (1, 2, 3)
    np.testing.assert_allclose(rgb, [[[100, 0, 0], [0, 9, 16]]])
    # YCbCr of a pure-red difference of 10 code values: BT.601 first column times 10/255.
    ycc = pse_map(a, b, colorspace="ycbcr")
    col = np.array([65.481, -37.797, 112.0]) * 10 / 255
    np.testing.assert_allclose(ycc[0, 0], col**2, rtol=1e-5)


def test_erosion_removes_isolated_pixel_and_keeps_5x5_blob():
    d = np.zeros((20, 20, 3), np.float32)
    d[3, 3, :] = 100.0  # isolated speck
    d[10:15, 10:15, 1] = 50.0  # 5x5 blob in one channel
    out = erode(d, size=3)
    assert out.dtype == np.float32 and out.shape == d.shape
    assert out[3, 3].max() == 0.0
    assert np.all(out[11:14, 11:14, 1] == 50.0)  # 3x3 core survives
    assert out[10, 10, 1] == 0.0  # rim eroded
    assert out[..., 0].max() == 0.0 and out[..., 2].max() == 0.0  # channels independent
    np.testing.assert_array_equal(erode(d, size=0), d)
    np.testing.assert_array_equal(erode(d, size=1), d)
    assert erode(d[..., 1], size=3).shape == (20, 20)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, (6, 7, 3), elements=st.floats(0, 1000, width=32)))
def test_erosion_never_raises_a_pixel(d):
    assert np.all(erode(d, size=3) <= d)


@pytest.mark.parametrize("shape", [(9, 11), (9, 11, 1), (9, 11, 3), (9, 11, 6), (2, 11, 3)])
@pytest.mark.parametrize("size", [2, 3, 5])
def test_erosion_equals_scipy_grey_erosion(shape, size):
    from scipy.ndimage import grey_erosion

    d = np.random.default_rng(size).random(shape, dtype=np.float32)
    fp = (size, size) if len(shape) == 2 else (size, size, 1)
    np.testing.assert_array_equal(erode(d, size=size), grey_erosion(d, size=fp, mode="reflect"))


@settings(max_examples=25, deadline=None)
@given(
    arrays(np.uint8, (8, 8, 3)),
    arrays(np.uint8, (8, 8, 3)),
    st.sampled_from(["ycbcr", "rgb"]),
)
def test_maps_non_negative_and_zero_for_identical(a, b, cs):
    for fn in (pse_map, ssim_map):
        m = fn(a, b, colorspace=cs)
        assert m.shape == (8, 8, 3) and m.dtype == np.float32
        assert np.all(m >= 0)
        np.testing.assert_allclose(fn(a, a, colorspace=cs), 0.0, atol=1e-6)


def test_ssim_map_detects_local_change():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    b = a.copy()
    b[12:20, 12:20] = 255 - b[12:20, 12:20]
    m = ssim_map(a, b)
    assert m[16, 16].mean() > 0.5
    assert m[2, 2].max() < 1e-6  # far from the change


def test_lpips_map_with_callable_and_ycbcr_feed():
    seen = {}

    def dist(x, y):
        seen["x"], seen["y"] = x, y
        return np.abs(x.astype(float) - y.astype(float)).mean(axis=-1)[None, None]  # [1,1,H,W]

    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[2, 2] = 255
    m = lpips_map(a, b, distance=dist)
    assert m.shape == (8, 8, 1) and m.dtype == np.float32
    assert m[2, 2, 0] == 255.0 and m[0, 0, 0] == 0.0
    s = DifferenceSettings(metric="lpips", colorspace="ycbcr", erosion=0)
    out = difference_map(a, b, settings=s, lpips_distance=dist)
    assert out.shape == (8, 8, 1)
    # YCbCr code values reach the callable as uint8: black -> (16, 128, 128)
    assert seen["x"].dtype == np.uint8
    np.testing.assert_array_equal(seen["x"][0, 0], (16, 128, 128))
    with pytest.raises(ValueError, match="map of shape"):
        lpips_map(a, b, distance=lambda x, y: np.zeros((4, 4)))


def test_difference_map_pipeline_and_energy():
    a = np.zeros((10, 10, 3), np.uint8)
    b = a.copy()
    b[4, 4] = 255  # single pixel: removed by erosion
    b[0:4, 6:10] = 40  # 4x4 block: core survives
    s = DifferenceSettings(metric="pse", colorspace="rgb", erosion=3)
    d = difference_map(a, b, settings=s)
    assert d[4, 4].max() == 0.0
    np.testing.assert_allclose(d[1, 8], [1600, 1600, 1600])
    e = energy(d)
    assert e.shape == (10, 10) and e.dtype == np.float32
    np.testing.assert_allclose(e[1, 8], 4800.0)
    off = difference_map(a, b, settings=DifferenceSettings(colorspace="rgb", erosion=0))
    assert off[4, 4].sum() == pytest.approx(3 * 255.0**2)


def test_module_is_torch_free():
    code = "import sys, cleftscore.heatmap, cleftscore.score.paper; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
