"""The evaluation's scatter plot: report/scatter.py draws plain numbers, evaluate names the row."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cleftscore.evaluate.files import evaluation_scatter, write_evaluation
from cleftscore.evaluate.grid import Evaluation, GridRow
from cleftscore.evaluate.markdown import row_caption
from cleftscore.report.scatter import scatter_image

_KW = {"labels": ["a", "b", "c"], "title": "t", "xlabel": "x", "ylabel": "y"}


def _red_pixels(img: np.ndarray) -> int:
    """Pixels of matplotlib's tab:red (the fit line), give or take antialiasing."""
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return int(np.sum((abs(r - 214) < 12) & (abs(g - 39) < 12) & (abs(b - 40) < 12)))


def test_scatter_is_an_rgb_picture_with_the_fit_line() -> None:
    img = scatter_image([1.0, 2.0, 3.0], [0.1, 0.3, 0.2], **_KW)
    assert img.shape == (480, 640, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
    assert _red_pixels(img) > 50
    flat = scatter_image([2.0, 2.0, 2.0], [0.1, 0.3, 0.2], **_KW)  # no spread in x: no line
    assert _red_pixels(flat) == 0


def test_scatter_draws_its_words() -> None:
    a = scatter_image([1.0, 2.0, 3.0], [0.1, 0.3, 0.2], **_KW)
    b = scatter_image([1.0, 2.0, 3.0], [0.1, 0.3, 0.2], **{**_KW, "title": "another title"})
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(
    ("x", "y", "labels", "match"),
    [
        ([1.0], [2.0], ["a"], "at least 2 points"),
        ([1.0, 2.0], [2.0], ["a", "b"], "one length"),
        ([1.0, 2.0], [2.0, 3.0], ["a"], "one length"),
        ([[1.0, 2.0]], [[2.0, 3.0]], ["a", "b"], "one length"),
    ],
)
def test_scatter_rejects_bad_input(x, y, labels, match) -> None:
    with pytest.raises(ValueError, match=match):
        scatter_image(x, y, **{**_KW, "labels": labels})


def _row() -> GridRow:
    return GridRow("gan-adapted", "pse", "+both", "mouth", n=3, pearson_r=0.9, pearson_ci=(0.5, 1.0), pearson_p=0.01,
                   spearman_rho=1.0, spearman_ci=(math.nan, math.nan), spearman_p=0.0,
                   files=("/d/P1.jpg", "C:\\d\\p2.png", "p3"), scores=(0.1, 0.2, 0.4), ratings=(2.0, 4.0, 6.0))  # fmt: skip


def test_evaluation_scatter_names_the_row() -> None:
    row = _row()
    assert row_caption(row, ci=0.9) == (
        "gan-adapted, PSE +Both, mouth\nPearson r = 0.900 [0.500, 1.000] (90% CI), rho = 1.000, n = 3"
    )
    expected = scatter_image([2.0, 4.0, 6.0], [0.1, 0.2, 0.4], labels=["P1", "p2", "p3"], title=row_caption(row, ci=0.9),
                             xlabel="human rating (higher = more abnormal)", ylabel="cleftscore score (higher = more normal)")  # fmt: skip
    np.testing.assert_array_equal(evaluation_scatter(row, higher_is="abnormal", ci=0.9), expected)


def test_written_scatter_is_the_best_row(tmp_path: Path) -> None:
    worse = GridRow("asymmetry", "ssim", "base", "face", n=3, pearson_r=0.2, pearson_ci=(0.0, 0.5), pearson_p=0.5,
                    spearman_rho=0.5, spearman_ci=(0.0, 1.0), spearman_p=0.5,
                    files=("a", "b", "c"), scores=(3.0, 1.0, 2.0), ratings=(1.0, 2.0, 3.0))  # fmt: skip
    ev = Evaluation(run_dir=tmp_path, method="gan", higher_is="normal", n_boot=0, ci=0.95, seed=0, rows=(worse, _row()),
                    matched=("a", "b", "c"), missing_in_run=(), missing_in_ratings=(), failed=(), notes=())  # fmt: skip
    files = write_evaluation(ev, tmp_path / "ev")
    assert files.scatter_png is not None
    np.testing.assert_array_equal(np.asarray(Image.open(files.scatter_png).convert("RGB")), evaluation_scatter(_row()))
