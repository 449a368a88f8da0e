"""The asymmetry method's score column: the face-referenced score by default, the paper's S by a setting.

Also the run-wide colour scale of the heat maps and the colour bar of the panel.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cleftscore.cli import app
from cleftscore.face.roi import roi_mask
from cleftscore.io import load_image
from cleftscore.report.pictures import colorbar, score_pictures
from cleftscore.run.folder import settings_differences
from cleftscore.run.pipeline import score_photos
from cleftscore.run.rescore import rescore_run
from cleftscore.run.settings import PipelineSettings
from cleftscore.score.asymmetry import AsymmetrySettings, asymmetry_score
from cleftscore.score.paper import (
    ASYMMETRY_SCORE_DEFINITION,
    PAPER_SCORE_DEFINITION,
    ScoreSettings,
    heatmap_top,
    score_photo,
)
from cleftscore.score.reference import load_reference


@pytest.fixture(scope="module")
def three_photos(tmp_path_factory: pytest.TempPathFactory, local_faces: Path, example_photo: Path) -> Path:
    d = tmp_path_factory.mktemp("three")
    shutil.copy(local_faces / "tiny_128px_portrait_uniform.jpg", d / "hopper.jpg")
    shutil.copy(local_faces / "two_faces_laughing_glasses_headtilt.jpg", d / "laughing.jpg")
    shutil.copy(example_photo, d / "astronaut.png")
    return d


@pytest.fixture(scope="module")
def default_run(three_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    results = score_photos([three_photos], PipelineSettings(method="asymmetry", size=256), out_dir=out)
    assert all(r.ok for r in results), [r.message for r in results]
    return out


def _records(run: Path) -> dict[str, dict]:
    return {p.name: json.loads((p / "result.json").read_text()) for p in sorted((run / "photos").iterdir())}


def _csv(run: Path) -> dict[str, dict[str, str]]:
    with open(run / "scores.csv", newline="", encoding="utf-8-sig") as fh:
        return {Path(r["file"]).name: r for r in csv.DictReader(fh)}


def test_the_score_column_is_the_face_referenced_score(default_run: Path) -> None:
    for pid, rec in _records(default_run).items():
        folder = default_run / "photos" / pid
        face, mirror = load_image(folder / "aligned.png"), load_image(folder / "normalized.png")
        lm = np.asarray(rec["geometry"]["landmarks_aligned"])
        expected = asymmetry_score(face, lm, settings=AsymmetrySettings(), mirror=mirror).score
        assert rec["score"] == pytest.approx(expected, abs=1e-9)
        assert rec["score_definition"] == ASYMMETRY_SCORE_DEFINITION
        # The paper's S of the same pair stays in the record, over the --roi region.
        s = score_photo(face, mirror, roi_mask(lm, face.shape[0], region="mouth"), settings=ScoreSettings()).score
        assert rec["measures"]["paper_S"]["value"] == pytest.approx(s, abs=1e-9)
        assert rec["measures"]["paper_S"]["stage"] == "score"
        frac = rec["measures"]["asymmetry_normal_fraction"]["value"]
        assert frac == pytest.approx(load_reference().fraction_more_symmetric(expected))
        assert "asymmetry_score" not in rec["measures"]  # it is the score itself


def test_csv_and_report_say_what_the_score_is(default_run: Path) -> None:
    rows = _csv(default_run)
    assert {r["score_definition"] for r in rows.values()} == {ASYMMETRY_SCORE_DEFINITION}
    recs = {Path(r["file"]).name: r for r in _records(default_run).values()}
    for name, row in rows.items():
        assert float(row["score"]) == pytest.approx(recs[name]["score"], abs=1e-5)
        assert float(row["paper_S"]) == pytest.approx(recs[name]["measures"]["paper_S"]["value"], abs=1e-3)
    html = (default_run / "report.html").read_text()
    assert "face-referenced asymmetry score (higher = more symmetric)" in html


def test_one_colour_scale_for_every_photo_of_a_run(default_run: Path) -> None:
    recs = list(_records(default_run).values())
    tops = {r["heatmap_max"] for r in recs}
    assert tops == {heatmap_top("asymmetry", ScoreSettings())}
    assert tops == {2.0 * load_reference().heatmap_scale}
    # The overlay of each photo is drawn with that top: where the heat map reaches it, the
    # overlay inside the region is the colour map's top colour blended at the overlay opacity,
    # whatever the photo's own maximum.
    for rec in recs:
        panel = load_image(default_run / "photos" / rec["photo_id"] / "panel.png")
        bar = colorbar(rec["heatmap_max"], 256)
        # The panel ends with the colour bar: its last columns are the bar's (resized to the
        # panel's picture height, under the label bar).
        assert panel.shape[1] > 4 * 256
        assert panel[-bar.shape[0] :, -bar.shape[1] :].shape == bar.shape


def test_score_pictures_use_the_given_scale(astronaut_face) -> None:
    face, lm = astronaut_face
    rng = np.random.default_rng(0)
    hm = rng.uniform(0, 1, face.shape[:2]).astype(np.float32)
    a = score_pictures(face, face, hm, vmax=10.0)
    b = score_pictures(face, face, hm * 5.0, vmax=10.0)
    c = score_pictures(face, face, hm * 5.0)  # its own scale: stretched like the first
    # With one scale, five times the difference is visibly hotter; with each map's own scale the
    # two maps would look the same.
    assert b["overlay.png"].astype(int).sum() > a["overlay.png"].astype(int).sum() + face.size
    own = score_pictures(face, face, hm)
    assert np.abs(own["overlay.png"].astype(int) - c["overlay.png"].astype(int)).max() <= 2


@pytest.fixture(scope="module")
def astronaut_face(example_photo: Path):
    from cleftscore.face import prepare_photo

    p = prepare_photo(example_photo, size=256)
    return p.aligned.image, np.asarray(p.aligned.landmarks)


def test_colorbar_runs_from_the_bottom_colour_to_the_top_colour() -> None:
    from matplotlib import colormaps

    bar = colorbar(4.0, 200)
    assert bar.shape[0] == 200 and bar.dtype == np.uint8
    col = bar[:, 5]
    coloured = np.flatnonzero(np.any(col != 255, axis=1))
    top, bottom = col[coloured[0]], col[coloured[-1]]
    cm = colormaps["inferno"]
    assert np.abs(top.astype(int) - np.array(cm(1.0, bytes=True)[:3])).max() <= 3
    assert np.abs(bottom.astype(int) - np.array(cm(0.0, bytes=True)[:3])).max() <= 3
    with pytest.raises(ValueError):
        colorbar(0.0, 200)


def test_heatmap_max_setting_is_used_and_recorded(three_photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["score", str(three_photos), "--method", "asymmetry", "--size", "256",
                                      "--heatmap-max", "3.5", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    recs = _records(out)
    assert {r["heatmap_max"] for r in recs.values()} == {3.5}
    assert {r["settings"]["score"]["heatmap_max"] for r in recs.values()} == {3.5}


def test_paper_setting_and_rescore_switch_between_the_two_scores(default_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(default_run, run)
    before = {r["photo_id"]: r for r in _records(run).values()}
    rescore_run(run, ScoreSettings(asymmetry_score="paper"))
    after = {r["photo_id"]: r for r in _records(run).values()}
    for pid, rec in after.items():
        # The paper's S becomes the score; the face-referenced score becomes a measure.
        assert rec["score"] == pytest.approx(before[pid]["measures"]["paper_S"]["value"], abs=1e-9)
        assert rec["measures"]["asymmetry_score"]["value"] == pytest.approx(before[pid]["score"], abs=1e-9)
        assert "paper_S" not in rec["measures"]
        assert rec["score_definition"] == PAPER_SCORE_DEFINITION
        assert rec["heatmap_max"] == heatmap_top("asymmetry", ScoreSettings(asymmetry_score="paper"))
    assert {r["status"] for r in _csv(run).values()} == {"ok"}
    # And back: the same numbers as the first run.
    rescore_run(run, ScoreSettings())
    for pid, rec in {r["photo_id"]: r for r in _records(run).values()}.items():
        assert rec["score"] == pytest.approx(before[pid]["score"], abs=1e-9)


def test_cli_asymmetry_score_paper(three_photos: Path, tmp_path: Path, default_run: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["score", str(three_photos), "--method", "asymmetry", "--size", "256",
                                      "--asymmetry-score", "paper", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    paper = {Path(r["file"]).name: r for r in _records(out).values()}
    default = {Path(r["file"]).name: r for r in _records(default_run).values()}
    for name, rec in paper.items():
        assert rec["score"] == pytest.approx(default[name]["measures"]["paper_S"]["value"], abs=1e-9)


def test_a_user_mask_is_the_face_referenced_region(three_photos: Path, tmp_path: Path) -> None:
    mask = np.zeros((256, 256), np.uint8)
    mask[150:220, 60:200] = 255
    mpath = tmp_path / "mask.png"
    Image.fromarray(mask).save(mpath)
    out = tmp_path / "run"
    results = score_photos([three_photos / "astronaut.png"], PipelineSettings(method="asymmetry", size=256,
                           score=ScoreSettings(mask_file=str(mpath))), out_dir=out)  # fmt: skip
    assert results[0].ok, results[0].message
    (rec,) = _records(out).values()
    folder = out / "photos" / rec["photo_id"]
    face, mirror = load_image(folder / "aligned.png"), load_image(folder / "normalized.png")
    lm = np.asarray(rec["geometry"]["landmarks_aligned"])
    expected = asymmetry_score(face, lm, settings=AsymmetrySettings(), mirror=mirror, roi=mask > 127).score
    default = asymmetry_score(face, lm, settings=AsymmetrySettings(), mirror=mirror).score
    assert rec["score"] == pytest.approx(expected, abs=1e-9)
    assert expected != pytest.approx(default, abs=1e-6)


def test_gan_records_are_not_stale_for_the_asymmetry_setting() -> None:
    gan_old = {"method": "gan", "score": {"roi": "mouth"}}
    run = {"method": "gan", "score": {"roi": "mouth", "asymmetry_score": "face-referenced"}}
    assert settings_differences(gan_old, run) == []
    asym_old = {"method": "asymmetry", "score": {"roi": "mouth"}}
    assert settings_differences(asym_old, {**run, "method": "asymmetry"}) != []


def test_evaluate_headline_is_the_run_score_and_the_paper_rows_stay(default_run: Path, tmp_path: Path) -> None:
    from cleftscore.evaluate.grid import FACE_REFERENCED_KEY, evaluate_run
    from cleftscore.evaluate.markdown import grid_markdown

    recs = list(_records(default_run).values())
    assert len(recs) == 3
    # Ratings that follow the face-referenced score exactly (higher = more normal).
    order = sorted(recs, key=lambda r: r["score"])
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("file,rating\n" + "".join(f"{Path(r['file']).name},{i + 2}\n" for i, r in enumerate(order)))
    ev = evaluate_run(default_run, ratings, n_boot=50)
    assert ev.headline is not None and ev.headline.key == FACE_REFERENCED_KEY
    assert ev.headline.n == 3 and ev.headline.spearman_rho == pytest.approx(1.0)
    assert dict(zip(ev.headline.files, ev.headline.scores, strict=True)) == pytest.approx(
        {r["file"]: r["score"] for r in recs}, abs=1e-9
    )
    # The paper's S of the asymmetry normalizer is still in the grid, as before.
    by_key = {r.key: r for r in ev.rows}
    paper = by_key[("asymmetry", "pse", "+both", "mouth")]
    assert dict(zip(paper.files, paper.scores, strict=True)) == pytest.approx(
        {r["file"]: r["measures"]["paper_S"]["value"] for r in recs}, abs=1e-6
    )
    md = grid_markdown(ev)
    assert "face-referenced score; the run's score column" in md and "Face-referenced score" in md


def test_score_settings_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="asymmetry_score"):
        ScoreSettings(asymmetry_score="symmetric")
    for bad in (0.0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="heatmap_max"):
            ScoreSettings(heatmap_max=bad)
    assert ScoreSettings(heatmap_max=2).heatmap_max == 2.0
    # The GAN method's score is S whatever the asymmetry setting says, and so is its scale.
    assert not ScoreSettings().face_referenced("gan")
    assert heatmap_top("gan", ScoreSettings()) == heatmap_top("asymmetry", ScoreSettings(asymmetry_score="paper"))


def test_a_bad_heatmap_max_is_one_line_for_score_and_rescore(default_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (["score", "--example", "--method", "asymmetry", "--heatmap-max", "0", "--out", str(tmp_path / "o")],
                 ["rescore", str(default_run), "--heatmap-max", "-1"]):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code != 0
        assert "heatmap_max must be a finite number > 0" in result.output and "Traceback" not in result.output


def test_tolerant_difference_is_the_minimum_over_the_disc_of_the_plain_squared_difference() -> None:
    import cv2

    from cleftscore.score.asymmetry import tolerant_difference

    rng = np.random.default_rng(11)
    a = rng.normal(size=(23, 19, 3)).astype(np.float32)
    b = rng.normal(size=(23, 19, 3)).astype(np.float32)
    r = 3
    padded = cv2.copyMakeBorder(b, r, r, r, r, cv2.BORDER_REFLECT)
    expected = np.full((23, 19), np.inf, np.float32)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dx * dx + dy * dy <= r * r:
                shifted = padded[r + dy : r + dy + 23, r + dx : r + dx + 19]
                sq = np.square(a - shifted)
                expected = np.minimum(expected, (sq[..., 0] + sq[..., 1]) + sq[..., 2])
    assert np.array_equal(tolerant_difference(a, b, radius=r), expected)
    assert np.array_equal(tolerant_difference(a, b, radius=0), np.square(a - b).sum(axis=-1, dtype=np.float32))
