"""The one-core speed benchmark of the asymmetry path, and the asymmetry score's inputs."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest

from cleftscore.benchmarks.asymmetry_speed import one_core, run_asymmetry_speed, scaled_copies

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cleftscore"


def test_the_asymmetry_score_receives_its_mirror_and_never_builds_one() -> None:
    tree = ast.parse((PACKAGE / "score" / "asymmetry.py").read_text(encoding="utf-8"))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("cleftscore.normalize")]
    from cleftscore.score.asymmetry import AsymmetrySettings, asymmetry_score

    face = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(TypeError, match="mirror"):
        asymmetry_score(face, np.zeros((68, 2)), settings=AsymmetrySettings())  # type: ignore[call-arg]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
def test_one_core_pins_and_restores() -> None:
    import cv2

    before_cpus, before_cv = os.sched_getaffinity(0), cv2.getNumThreads()
    with one_core() as info:
        assert len(os.sched_getaffinity(0)) == 1
        assert cv2.getNumThreads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
        assert info["cv2_threads"] == 1 and len(info["cpu_affinity"]) == 1
    assert os.sched_getaffinity(0) == before_cpus and cv2.getNumThreads() == before_cv


def test_scaled_copies_have_the_asked_longest_side(tmp_path: Path, local_faces: Path) -> None:
    from PIL import Image

    photo = local_faces / "two_faces_laughing_glasses_headtilt.jpg"
    for side, path in zip((64, 700), scaled_copies(photo, (64, 700), tmp_path), strict=True):
        assert max(Image.open(path).size) == side


@pytest.mark.slow
def test_run_reports_every_stage_of_a_scored_photo(local_faces: Path) -> None:
    report = run_asymmetry_speed([local_faces / "two_faces_laughing_glasses_headtilt.jpg"], sizes=(256,), repeats=1)
    assert report["pinning"]["cv2_threads"] == 1
    assert len(report["photos"]) == 2
    row = report["photos"][0]
    assert row["status"] == "ok"
    for stage in ("load", "detect", "landmarks", "align", "mirror", "paper_score", "face_referenced_score"):
        assert row["stages_s"][stage] > 0
    assert set(row["pictures_s"]) >= {"heatmap.png", "overlay.png", "overlay_original.png", "panel.png", "thumb.jpg"}
    assert {"aligned.png", "normalized.png", "heatmap.png"} <= set(row["encode_s"])
    assert row["whole_s"]["whole_photo"] > 0 and row["sum_of_stages_s"] > 0
    assert "scaled to 256px" in report["photos"][1]["photo"]
