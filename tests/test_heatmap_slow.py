"""The YCbCr transform on every 8-bit colour (slow: 16.7 million colours, about 5 s)."""

from __future__ import annotations

import numpy as np
import pytest

from cleftscore.heatmap import to_colorspace

pytestmark = pytest.mark.slow


def test_ycbcr_equals_skimages_rgb2ycbcr_on_every_8_bit_colour_and_on_floats() -> None:
    # The OpenCV pass may differ from skimage's matrix product in the last bit, never more.
    from skimage.color import rgb2ycbcr

    levels = np.arange(256, dtype=np.uint8)
    every = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(4096, 4096, 3)
    got = to_colorspace(every, colorspace="ycbcr")
    assert got.dtype == np.float64 and got.shape == every.shape
    assert np.abs(got - rgb2ycbcr(every.astype(np.float64) / 255.0)).max() <= 1e-12
    floats = np.random.default_rng(0).uniform(size=(5, 7, 3))[:, ::2]  # not contiguous
    assert np.abs(to_colorspace(floats, colorspace="ycbcr") - rgb2ycbcr(floats)).max() <= 1e-12
