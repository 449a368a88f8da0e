"""Tests of ``cleftscore align``: outputs per photo, summary.csv, and batches that survive bad files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cleftscore.cli import app
from cleftscore.io import load_image

runner = CliRunner()


def _summary(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "summary.csv", newline="", encoding="utf-8") as fh:
        return {Path(r["file"]).name: r for r in csv.DictReader(fh)}


def _stderr(result) -> str:  # noqa: ANN001
    try:
        return result.stderr
    except ValueError:  # older Click: stderr mixed into output
        return result.output


def test_batch_with_bad_files_goes_on(tmp_path: Path, local_faces: Path, shared_faces: Path) -> None:
    photos = tmp_path / "in"
    photos.mkdir()
    shutil.copy(local_faces / "tiny_128px_portrait_uniform.jpg", photos)
    shutil.copy(local_faces / "two_faces_laughing_glasses_headtilt.jpg", photos)
    shutil.copy(shared_faces / "no_human_face_dogs_collage.jpg", photos)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (photos / "readme.txt").write_text("not a photo, and not picked up from the folder")
    out = tmp_path / "out"
    result = runner.invoke(app, ["align", str(photos), "--out", str(out), "--size", "64"])
    assert result.exit_code == 0, result.output
    err = _stderr(result)
    assert "Traceback" not in result.output and "Traceback" not in err
    rows = _summary(out)
    assert set(rows) == {
        "tiny_128px_portrait_uniform.jpg",
        "two_faces_laughing_glasses_headtilt.jpg",
        "no_human_face_dogs_collage.jpg",
        "broken.jpg",
    }
    assert rows["no_human_face_dogs_collage.jpg"]["status"] == "failed"
    assert "no face found" in rows["no_human_face_dogs_collage.jpg"]["message"]
    assert rows["broken.jpg"]["status"] == "failed"
    assert rows["two_faces_laughing_glasses_headtilt.jpg"]["faces_found"] == "2"
    assert "using the largest" in rows["two_faces_laughing_glasses_headtilt.jpg"]["message"]
    # one error line per failed photo, naming the file
    error_lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 2
    assert any("no_human_face_dogs_collage.jpg" in ln for ln in error_lines)
    assert any("broken.jpg" in ln for ln in error_lines)
    for stem in ("tiny_128px_portrait_uniform", "two_faces_laughing_glasses_headtilt"):
        assert rows[f"{stem}.jpg"]["status"] == "ok"
        aligned = load_image(out / f"{stem}_aligned.png")
        assert aligned.shape == (64, 64, 3)
        preview = load_image(out / f"{stem}_preview.png")
        assert preview.shape == load_image(photos / f"{stem}.jpg").shape
    assert not list(out.glob("no_human_face*")) and not list(out.glob("broken*"))


def test_json_record(tmp_path: Path, local_faces: Path) -> None:
    out = tmp_path / "out"
    photo = local_faces / "tiny_128px_portrait_uniform.jpg"
    result = runner.invoke(app, ["align", str(photo), "-o", str(out), "--size", "64", "--detector", "haar"])
    assert result.exit_code == 0, result.output
    rec = json.loads((out / "tiny_128px_portrait_uniform_align.json").read_text())
    assert rec["size"] == 64 and rec["detector"] == "haar" and rec["n_faces"] == 1
    assert rec["box"]["detector"] == "haar" and rec["score"] == rec["box"]["score"]
    assert rec["original_shape"] == [128, 128]
    m = np.array(rec["to_original"])
    lm_al = np.array(rec["landmarks_aligned"])
    lm_or = np.array(rec["landmarks_original"])
    assert m.shape == (3, 3) and lm_al.shape == lm_or.shape == (68, 2)
    np.testing.assert_allclose(lm_al @ m[:2, :2].T + m[:2, 2], lm_or, atol=0.01)


def test_all_failed_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    out = tmp_path / "out"
    result = runner.invoke(app, ["align", str(bad), str(tmp_path / "missing.jpg"), "--out", str(out)])
    assert result.exit_code == 1
    rows = _summary(out)
    assert {r["status"] for r in rows.values()} == {"failed"}
    assert "file not found" in rows["missing.jpg"]["message"]


@pytest.mark.parametrize("size", ["100", "8"])
def test_bad_size(tmp_path: Path, local_faces: Path, size: str) -> None:
    result = runner.invoke(
        app, ["align", str(local_faces / "tiny_128px_portrait_uniform.jpg"), "--out", str(tmp_path), "--size", size]
    )
    assert result.exit_code == 1
    assert "power of two" in _stderr(result)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["align", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "empty" in _stderr(result)  # the folder is named on its own failed row


def test_repeated_stems_do_not_overwrite(tmp_path: Path, local_faces: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shutil.copy(local_faces / "tiny_128px_portrait_uniform.jpg", a / "face.jpg")
    shutil.copy(local_faces / "grayscale_tiny_128px_portrait.jpg", b / "face.jpg")
    out = tmp_path / "out"
    result = runner.invoke(app, ["align", str(a / "face.jpg"), str(b / "face.jpg"), "--out", str(out), "--size", "64"])
    assert result.exit_code == 0, result.output
    assert (out / "face_aligned.png").exists() and (out / "face-2_aligned.png").exists()
    color = load_image(out / "face_aligned.png").astype(int)
    gray = load_image(out / "face-2_aligned.png").astype(int)
    assert np.abs(gray[..., 0] - gray[..., 2]).max() == 0 and np.abs(color[..., 0] - color[..., 2]).max() > 20


def test_help_mentions_exit_codes() -> None:
    result = runner.invoke(app, ["align", "--help"])
    assert result.exit_code == 0
    assert "summary.csv" in result.output and "Exit code" in result.output
