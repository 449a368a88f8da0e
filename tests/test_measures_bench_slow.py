"""``cleftscore bench nasolabial`` on a small made-up development folder (slow: it places landmarks ~30 times)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cleftscore.benchmarks.nasolabial import DOT_COLOURS
from cleftscore.cli import app
from cleftscore.io import load_image, write_png

pytestmark = pytest.mark.slow


def _devsets(root: Path, photo: Path) -> Path:
    img = load_image(photo)
    rows = []
    for k in range(10):  # ten "normal" photos: the same face, slightly shifted
        name = f"normal_adults_dlib/n{k}.png"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_png(root / name, np.roll(img, 3 * k, axis=1))
        rows.append(
            {"file": name, "set": "normal_adults_dlib", "group": "normal", "phase": "", "grade": "", "ab_ratio": ""}
        )
    for k, (dy, phase) in enumerate(((0, "post"), (6, "pre"), (12, "pre"))):
        dotted = img.copy()
        for colour, (x, y) in (("red", (200, 150)), ("red", (300, 150)), ("green", (230, 230)), ("green", (280, 230)),
                               ("blue", (220, 300)), ("blue", (290, 300 + dy))):  # fmt: skip
            cv2.circle(dotted, (x, y), 7, DOT_COLOURS[colour], -1)
        name = f"pre_post_graded/g{k}.png"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_png(root / name, dotted)
        rows.append({"file": name, "set": "pre_post_graded", "group": "cleft", "phase": phase, "grade": "mild",
                     "ab_ratio": str(dy / 150)})  # fmt: skip
    with open(root / "labels.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_bench_nasolabial_reports_aggregates_only(tmp_path: Path, example_photo: Path) -> None:
    root = _devsets(tmp_path / "devsets", example_photo)
    out, ref = tmp_path / "report.json", tmp_path / "ref.json"
    r = CliRunner().invoke(
        app, ["bench", "nasolabial", "--devsets", str(root), "--out", str(out), "--reference", str(ref)]
    )
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert report["photos"] == 13 and report["faces_found"] == 13
    graded = report["graded"]
    assert graded["photos"] == 3 and graded["dots_found"] == 3
    assert graded["dots_image_vertical_as_graded"]["spearman"] == pytest.approx(1.0)  # built to follow A/B
    assert graded["corrected nl_alar_base_height_asym_icd"]["n"] == 3
    assert report["auroc"]["before_vs_after_repair"] == {"n_positive": 2, "n_negative": 1}
    rep = report["repeatability"]["nl_alar_base_height_asym_icd"]
    assert rep["grayscale"]["n"] == 6 and rep["normal_5_95"][0] <= rep["normal_5_95"][1]  # 3 graded + every 4th normal
    assert json.loads(ref.read_text())["n"]["nl_alar_base_height_asym_icd"] == 10
    text = out.read_text()
    assert "g0.png" not in text and "n0.png" not in text  # no photo is named
