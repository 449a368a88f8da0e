"""The ``cleftscore bench`` verbs that time the CPU path: each writes its JSON report with --out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cleftscore.cli import app

TINY = "tiny_128px_portrait_uniform.jpg"


def test_align_speed_times_each_stage(tmp_path, local_faces) -> None:
    out = tmp_path / "a.json"
    args = ["bench", "align-speed", "--faces", str(local_faces), "--photo", TINY, "--photo", "absent.jpg",
            "--reps", "2", "--size", "128", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["output_size"] == 128 and rep["reps"] == 2 and rep["target_s"] == 2.0
    assert list(rep["results"]) == [TINY]  # the absent photo is skipped
    r = rep["results"][TINY]
    assert r["image_shape"] == [128, 128, 3]
    stages = r["median_s"]
    assert set(stages) == {"load", "detect", "landmarks", "align", "total", "cpu_total"}
    assert stages["total"] >= stages["detect"] > 0
    assert r["min_total_s"] <= r["max_total_s"]


def test_align_speed_says_what_is_missing(tmp_path, local_faces) -> None:
    res = CliRunner().invoke(app, ["bench", "align-speed", "--faces", str(tmp_path / "none")])
    assert res.exit_code != 0 and "--faces" in res.output
    res = CliRunner().invoke(app, ["bench", "align-speed", "--faces", str(local_faces), "--photo", "absent.jpg"])
    assert res.exit_code != 0 and "absent.jpg" in res.output


def test_mirror_speed_scores_and_times_each_photo(tmp_path, local_faces) -> None:
    faces = tmp_path / "faces"
    faces.mkdir()
    shutil.copy(local_faces / TINY, faces / TINY)
    (faces / "notes.txt").write_text("not a photo")
    out = tmp_path / "m.json"
    res = CliRunner().invoke(app, ["bench", "mirror-speed", "--faces", str(faces), "--size", "256", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["benchmark"] == "mirror_speed" and rep["size"] == 256 and rep["warp"] == "thin-plate"
    assert rep["n_photos"] == rep["n_ok"] == 1
    (row,) = rep["photos"]
    assert row["file"] == TINY and row["status"] == "ok" and row["repeat"] == 0
    assert isinstance(row["score"], float)
    assert set(row["seconds"]) == {"load_prepare", "mirror", "score", "pictures", "write", "total"}
    assert rep["per_photo_s_max"] == pytest.approx(row["seconds"]["total"], abs=1e-3)
    assert rep["meets_target"] == (rep["per_photo_s_max"] < 5.0)
    assert rep["report_html_kb"] > 0
    bad = CliRunner().invoke(app, ["bench", "mirror-speed", "--faces", str(faces), "--warp", "affine"])
    assert bad.exit_code != 0 and "affine" in bad.output


def test_ray_speed_without_ray_names_the_extra(monkeypatch, local_faces, tiny_generator_file) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    args = ["bench", "ray-speed", "--faces", str(local_faces), "--generator", str(tiny_generator_file)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1
    assert "ray extra" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["bench", "ray-speed", "--faces", str(Path("no") / "such")])
    assert res.exit_code != 0 and "--faces" in res.output


def test_distinct_photos_are_distinct(tmp_path, local_faces) -> None:
    import numpy as np
    from PIL import Image

    from cleftscore.benchmarks.ray_speed import distinct_photos

    n_sources = len(list(local_faces.glob("*.jpg")))
    paths = distinct_photos(local_faces, tmp_path / "p", n_sources + 2)
    assert len(set(paths)) == n_sources + 2
    first, mirrored = (np.asarray(Image.open(p)) for p in (paths[0], paths[n_sources]))
    assert first.shape == mirrored.shape and np.array_equal(first[:, ::-1], mirrored)
    with pytest.raises(ValueError, match="no \\*.jpg"):
        distinct_photos(tmp_path / "p", tmp_path / "q", 1)
