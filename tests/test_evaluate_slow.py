"""Tests of ``cleftscore.evaluate`` and ``cleftscore evaluate``: ratings, correlations, the grid, its files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cleftscore.errors import CleftscoreError
from cleftscore.evaluate.files import write_evaluation
from cleftscore.evaluate.grid import (
    FACE_REFERENCED_KEY,
    GRID_METRICS,
    GRID_REGIONS,
    GRID_VARIANTS,
    LPIPS_MISSING_REASON,
    evaluate_run,
    evaluation_grid,
)
from cleftscore.evaluate.markdown import grid_markdown
from cleftscore.evaluate.ratings import match_ratings, read_ratings
from cleftscore.evaluate.statistics import correlate
from cleftscore.run.folder import write_photo
from cleftscore.run.record import FaceGeometry, PhotoRecord

# The whole file runs in .ci/run's slow pass: the README's pytest stays under 150 s on 2 cores.
pytestmark = pytest.mark.slow

# ----------------------------------------------------------------------------------------------
# A mean-face 68-point template (dlib order) in the 1024-px FFHQ frame, symmetric about x = 512.
# Written for these tests from the usual FFHQ proportions (eyes at y ~ 480, mouth at y ~ 740).
# ----------------------------------------------------------------------------------------------


def _template_1024() -> np.ndarray:
    th = np.pi - np.arange(17) * np.pi / 16
    jaw = np.stack([512 + 250 * np.cos(th), 470 + 420 * np.sin(th)], axis=1)
    brow_l = np.array([[320, 400], [357, 382], [395, 372], [432, 375], [470, 385]], float)
    brow_r = np.array([[1024 - x, y] for x, y in brow_l[::-1]])
    bridge = np.array([[512, 460], [512, 510], [512, 560], [512, 610]], float)
    nose = np.array([[460, 640], [485, 650], [512, 655], [539, 650], [564, 640]], float)
    eye_l = np.array([[355, 482], [380, 465], [415, 465], [440, 485], [415, 495], [380, 495]], float)
    eye_r = np.array([[584, 485], [609, 465], [644, 465], [669, 482], [644, 495], [609, 495]], float)
    mouth_outer = np.array(
        [
            [425, 740],
            [450, 720],
            [485, 708],
            [512, 712],
            [539, 708],
            [574, 720],
            [599, 740],
            [574, 765],
            [539, 778],
            [512, 780],
            [485, 778],
            [450, 765],
        ],
        float,
    )
    mouth_inner = np.array(
        [[435, 740], [485, 728], [512, 730], [539, 728], [589, 740], [539, 752], [512, 754], [485, 752]], float
    )
    pts = np.concatenate([jaw, brow_l, brow_r, bridge, nose, eye_l, eye_r, mouth_outer, mouth_inner])
    assert pts.shape == (68, 2)
    return pts


SIZE = 64
LANDMARKS = _template_1024() * (SIZE / 1024.0)
AMPLITUDES = (10, 15, 22, 33, 50, 75, 110, 160)  # defect strength per photo, geometric


def _rating_for(amplitude: float) -> float:
    """1 = most abnormal .. 7 = normal, linear in log(defect amplitude)."""
    lo, hi = math.log(AMPLITUDES[0]), math.log(AMPLITUDES[-1])
    return 7.0 - 6.0 * (math.log(amplitude) - lo) / (hi - lo)


def _base_face(rng: np.random.Generator) -> np.ndarray:
    """A smooth, left-right symmetric skin-coloured 64x64 image with a little texture."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    r = np.hypot(xx - (SIZE - 1) / 2, (yy - SIZE / 2) * 0.8) / SIZE
    base = np.stack([200 - 60 * r, 150 - 50 * r, 120 - 40 * r], axis=-1)
    tex = rng.normal(0, 4, size=(SIZE, SIZE // 2, 3))
    base += np.concatenate([tex, tex[:, ::-1]], axis=1)
    return base


def _save(path: Path, img: np.ndarray) -> None:
    Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)).save(path)


def _geometry() -> FaceGeometry:
    return FaceGeometry(size=SIZE, faces_found=1, face_box=(0.0, 0.0, SIZE, SIZE), detector_score=1.0,
                        landmarks_aligned=LANDMARKS, landmarks_original=LANDMARKS, to_original=np.eye(3),
                        original_shape=(SIZE, SIZE))  # fmt: skip


def _photo(
    run: Path,
    pid: str,
    file: str,
    *,
    method: str,
    amplitude: float,
    rng: np.random.Generator,
    mask_file: str | None = None,
) -> None:
    """One scored photo, written through the run-folder writer as ``score`` writes it."""
    base = _base_face(rng)
    aligned = base.copy()
    aligned[44:48, 33:39, 0] -= amplitude / 2  # painted defect, one side of the upper lip
    aligned[44:48, 33:39, 1] -= amplitude

    def u8(img: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)

    files = {"aligned.png": u8(aligned)}
    if method == "gan":
        for name, level in {"normalized.png": 2.0, "inverted.png": 4.0}.items():
            # +-1..level everywhere, so no difference map is exactly zero
            noise = rng.integers(1, int(level) + 1, size=base.shape) * rng.choice([-1, 1], base.shape)
            files[name] = u8(base + noise)
    else:
        files["normalized.png"] = u8(aligned[:, ::-1])
    rec = PhotoRecord(file=file, photo_id=pid, status="ok", method=method, score=0.0,
                      settings={"method": method, "score": {"mask_file": mask_file}},
                      geometry=_geometry(), pictures=tuple(files))  # fmt: skip
    write_photo(run, rec, files)


def _make_run(run: Path, *, method: str = "gan", mask_file: str | None = None) -> Path:
    """A run folder with 8 rated photos, 1 unrated photo and 1 failed photo."""
    rng = np.random.default_rng(1234)
    run.mkdir(parents=True)
    for i, amp in enumerate(AMPLITUDES):
        _photo(
            run, f"p{i:02d}", f"/data/clinic/P{i:02d}.jpg", method=method, amplitude=amp, rng=rng, mask_file=mask_file
        )
    _photo(run, "unrated", "/data/clinic/unrated.jpg", method=method, amplitude=30, rng=rng, mask_file=mask_file)
    failed = PhotoRecord(file="/data/clinic/noface.jpg", photo_id="noface", status="failed",
                         message="/data/clinic/noface.jpg: no face found", method=method)  # fmt: skip
    write_photo(run, failed, {})
    return run


def _write_ratings(path: Path) -> Path:
    lines = ["file,rating"]
    for i, amp in enumerate(AMPLITUDES):
        name = f"p{i:02d}.JPG" if i % 2 else f"P{i:02d}"  # basename (other case) or stem
        lines.append(f"{name},{_rating_for(amp):.4f}")
    lines += ["noface.jpg,3", "ghost.png,4"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _fake_lpips(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).mean(axis=-1) / 255.0


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evalrun")
    return _make_run(root / "run"), _write_ratings(root / "ratings.csv")


@pytest.fixture(scope="module")
def gan_eval(gan_run: tuple[Path, Path]):
    run, ratings = gan_run
    return evaluate_run(run, ratings, lpips_distance=_fake_lpips, n_boot=200, seed=0)


# ----------------------------------------------------------------------------------------------
# correlate
# ----------------------------------------------------------------------------------------------


def _bivariate(n: int = 40, rho: float = 0.8, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cov = [[1.0, rho], [rho, 1.0]]
    xy = rng.multivariate_normal([0.0, 0.0], cov, size=n)
    return 5.0 + xy[:, 0], 4.0 + 1.5 * xy[:, 1]


def test_correlate_recovers_known_correlation() -> None:
    x, y = _bivariate()
    c = correlate(x, y, n_boot=2000, seed=0)
    assert c.n == 40
    assert c.pearson_r == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    lo, hi = c.pearson_ci
    assert lo < c.pearson_r < hi
    assert lo < 0.8 < hi
    assert hi - lo < 0.4  # n = 40 gives a usefully narrow interval
    rho_true = 6 / math.pi * math.asin(0.8 / 2)  # Spearman of a bivariate normal with r = 0.8
    assert c.spearman_ci[0] < c.spearman_rho < c.spearman_ci[1]
    assert c.spearman_ci[0] < rho_true < c.spearman_ci[1]
    assert c.pearson_p < 1e-6 and c.spearman_p < 1e-6


def test_correlate_higher_is_abnormal_flips_sign() -> None:
    x, y = _bivariate()
    a = correlate(x, y, seed=3, n_boot=500)
    b = correlate(x, y, higher_is="abnormal", seed=3, n_boot=500)
    assert b.pearson_r == pytest.approx(-a.pearson_r)
    assert b.spearman_rho == pytest.approx(-a.spearman_rho)
    assert b.pearson_ci == pytest.approx((-a.pearson_ci[1], -a.pearson_ci[0]))
    # a severity scale (higher = worse) read with the right direction reports agreement
    c = correlate(x, 10 - y, higher_is="abnormal", seed=3, n_boot=500)
    assert c.pearson_r == pytest.approx(a.pearson_r)


def test_correlate_bootstrap_is_deterministic_for_a_seed() -> None:
    x, y = _bivariate(n=15)
    a = correlate(x, y, seed=11, n_boot=300)
    b = correlate(x, y, seed=11, n_boot=300)
    c = correlate(x, y, seed=12, n_boot=300)
    assert a == b
    assert a.pearson_ci != c.pearson_ci
    gen = correlate(x, y, seed=np.random.default_rng(11), n_boot=300)
    assert gen.pearson_ci == a.pearson_ci


def test_correlate_spearman_is_rank_based() -> None:
    x = np.arange(1.0, 11.0)
    y = np.exp(x)  # monotone, far from linear
    c = correlate(x, y, n_boot=100)
    assert c.spearman_rho == pytest.approx(1.0)
    assert c.spearman_ci == pytest.approx((1.0, 1.0))
    assert c.pearson_r < 0.9


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "match"),
    [
        ([1, 2], [1, 2], {}, "at least 3"),
        ([1, 2, 3], [1, 2], {}, "equal length"),
        ([1, 1, 1, 1], [1, 2, 3, 4], {}, "scores are equal"),
        ([1, 2, 3, 4], [5, 5, 5, 5], {}, "ratings are equal"),
        ([1, 2, float("nan"), 4], [1, 2, 3, 4], {}, "finite"),
        ([1, 2, 3], [1, 2, 3], {"higher_is": "worse"}, "higher_is"),
        ([1, 2, 3], [1, 2, 3], {"ci": 95}, "ci must be"),
        ([1, 2, 3], [1, 2, 3], {"n_boot": -1}, "n_boot"),
    ],
)
def test_correlate_rejects_bad_input(x, y, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        correlate(x, y, **kwargs)


def test_correlate_without_bootstrap_gives_nan_intervals() -> None:
    x, y = _bivariate(n=10)
    c = correlate(x, y, n_boot=0)
    assert all(math.isnan(v) for v in c.pearson_ci + c.spearman_ci)
    assert math.isfinite(c.pearson_r)


# ----------------------------------------------------------------------------------------------
# read_ratings / match_ratings
# ----------------------------------------------------------------------------------------------


def test_read_ratings_formats(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text("\ufeffRater;File;Rating\nA;a.jpg;3\n\nA;B.png;6.5\n", encoding="utf-8")
    assert read_ratings(p) == {"a.jpg": 3.0, "B.png": 6.5}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name,rating\na.jpg,3\n", r"line 1: missing column\(s\) file"),
        ("file,score\na.jpg,3\n", r"line 1: missing column\(s\) rating"),
        ("file,rating\na.jpg,3\nb.jpg,bad\n", r"line 3: rating 'bad' for 'b.jpg' is not a number"),
        ("file,rating\na.jpg,\n", r"line 2: no rating for 'a.jpg'"),
        ("file,rating\na.jpg,inf\n", r"line 2: .*not a finite number"),
        ("file,rating\n,3\n", r"line 2: the 'file' column is empty"),
        ("file,rating\nA.jpg,3\na.JPG,4\n", r"line 3: 'a.JPG' is rated twice \(also line 2"),
        ("file,rating\n", "no ratings below the header"),
        ("", "empty"),
    ],
)
def test_read_ratings_errors_name_the_line(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "ratings.csv"
    p.write_text(text)
    with pytest.raises(CleftscoreError, match=match) as info:
        read_ratings(p)
    assert "ratings.csv" in str(info.value)
    assert "\n" not in str(info.value)


def test_read_ratings_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CleftscoreError, match="ratings file not found"):
        read_ratings(tmp_path / "nope.csv")


def test_match_ratings_names_and_missing() -> None:
    scores = {
        "/data/x/P01.jpg": 1.0,
        r"C:\photos\p02.png": 2.0,
        "/data/x/p03.jpeg": 3.0,
        "/data/y/p04.jpg": 4.0,
        "/data/x/unrated.jpg": 5.0,
    }
    ratings = {"p01.JPG": 7.0, "P02": 6.0, "/data/x/p03.jpeg": 5.0, "p04.jpg": 4.0, "ghost.jpg": 1.0}
    m = match_ratings(scores, ratings)
    assert m.files == ("/data/x/P01.jpg", r"C:\photos\p02.png", "/data/x/p03.jpeg", "/data/y/p04.jpg")
    np.testing.assert_array_equal(m.scores, [1, 2, 3, 4])
    np.testing.assert_array_equal(m.ratings, [7, 6, 5, 4])
    assert m.rating_files == ("p01.JPG", "P02", "/data/x/p03.jpeg", "p04.jpg")
    assert m.missing_in_run == ("ghost.jpg",)
    assert m.missing_in_ratings == ("/data/x/unrated.jpg",)


def test_match_ratings_full_path_resolves_duplicate_basenames() -> None:
    scores = {"/a/p1.jpg": 1.0, "/b/p1.jpg": 2.0}
    m = match_ratings(scores, {"/a/p1.jpg": 3.0, "/B/P1.JPG": 4.0})
    assert dict(zip(m.files, m.ratings, strict=True)) == {"/a/p1.jpg": 3.0, "/b/p1.jpg": 4.0}
    with pytest.raises(CleftscoreError, match="ambiguous photo name 'p1'"):
        match_ratings(scores, {"p1": 3.0})


# ----------------------------------------------------------------------------------------------
# The grid on a synthetic run folder
# ----------------------------------------------------------------------------------------------


def test_grid_has_every_row(gan_eval) -> None:
    rows = gan_eval.rows
    keys = {r.key for r in rows}
    # Every normalizer x metric x variant x region, plus the asymmetry method's face-referenced score.
    assert len(rows) == len(keys) == 3 * len(GRID_METRICS) * len(GRID_VARIANTS) * len(GRID_REGIONS) + 1
    assert FACE_REFERENCED_KEY in keys
    assert {r.normalizer for r in rows} == {"gan-adapted", "gan-inversion", "asymmetry"}
    assert all(r.available for r in rows), [r for r in rows if not r.available]
    assert all(r.n == len(AMPLITUDES) for r in rows)


def test_grid_pse_mouth_rows_recover_the_painted_defect(gan_eval) -> None:
    by_key = {r.key: r for r in gan_eval.rows}
    for normalizer in ("gan-adapted", "gan-inversion"):
        for variant in GRID_VARIANTS:
            row = by_key[(normalizer, "pse", variant, "mouth")]
            assert row.pearson_r > 0.97, row
            assert row.spearman_rho == pytest.approx(1.0), row
            assert row.pearson_ci[0] <= row.pearson_r <= row.pearson_ci[1]
    head = gan_eval.headline
    assert head is not None and head.key == ("gan-adapted", "pse", "+both", "mouth")
    assert head.pearson_r > 0.97
    # the mouth ROI sees the defect more cleanly than the whole face (the paper's finding)
    face = by_key[("gan-inversion", "pse", "base", "face")]
    mouth = by_key[("gan-inversion", "pse", "base", "mouth")]
    assert mouth.pearson_r >= face.pearson_r
    # the asymmetry normalizer sees a one-sided defect on a symmetric face too
    assert by_key[("asymmetry", "pse", "+both", "mouth")].spearman_rho > 0.9


def test_grid_with_unrelated_ratings_shows_no_agreement(gan_run) -> None:
    run, ratings_path = gan_run
    ratings = read_ratings(ratings_path)
    names = [k for k in ratings if k not in ("noface.jpg", "ghost.png")]
    values = [ratings[k] for k in names]
    shuffled = dict(zip(names, [values[i] for i in (3, 6, 0, 5, 2, 7, 1, 4)], strict=True))
    rows = evaluation_grid(run, shuffled, n_boot=50)
    head = next(r for r in rows if r.key == ("gan-adapted", "pse", "+both", "mouth"))
    assert abs(head.pearson_r) < 0.5
    assert head.pearson_ci[0] < 0 < head.pearson_ci[1]


def test_grid_scores_equal_the_single_photo_pipeline(gan_run, gan_eval) -> None:
    """Eroding the cached map afterwards gives the same S as difference_map with erosion."""
    from cleftscore.face.roi import roi_mask
    from cleftscore.heatmap import DifferenceSettings, difference_map
    from cleftscore.io import load_image
    from cleftscore.score.paper import roi_score

    run, _ = gan_run
    head = gan_eval.headline
    d = run / "photos" / "p03"
    diff = difference_map(
        load_image(d / "aligned.png"),
        load_image(d / "normalized.png"),
        settings=DifferenceSettings(metric="pse", colorspace="ycbcr", erosion=3),
    )
    expected = roi_score(diff, roi_mask(LANDMARKS, SIZE, region="mouth"))
    assert head.scores[head.files.index("/data/clinic/P03.jpg")] == pytest.approx(expected, rel=1e-9)


def test_grid_lists_missing_and_failed_photos(gan_eval) -> None:
    assert set(gan_eval.matched) == {f"/data/clinic/P{i:02d}.jpg" for i in range(len(AMPLITUDES))}
    assert gan_eval.missing_in_ratings == ("/data/clinic/unrated.jpg",)
    assert gan_eval.missing_in_run == ("noface.jpg (failed in the run)", "ghost.png")
    assert gan_eval.failed == (("/data/clinic/noface.jpg", "/data/clinic/noface.jpg: no face found"),)


def test_grid_higher_is_abnormal_flips(gan_run) -> None:
    run, ratings_path = gan_run
    flipped = {k: 8.0 - v for k, v in read_ratings(ratings_path).items()}
    rows = evaluation_grid(run, flipped, higher_is="abnormal", lpips_distance=None, n_boot=50)
    head = next(r for r in rows if r.key == ("gan-adapted", "pse", "+both", "mouth"))
    assert head.pearson_r > 0.97
    assert head.ratings[0] == pytest.approx(8.0 - _rating_for(AMPLITUDES[0]), abs=1e-4)


def test_grid_without_vgg16_reports_lpips_na(gan_run) -> None:
    run, ratings = gan_run
    ev = evaluate_run(run, ratings, n_boot=20)
    lp = [r for r in ev.rows if r.metric == "lpips"]
    assert lp and all(not r.available and LPIPS_MISSING_REASON in r.note for r in lp)
    assert all(r.available for r in ev.rows if r.metric != "lpips")
    assert any("LPIPS" in n and "weights fetch vgg16" in n for n in ev.notes)
    md = grid_markdown(ev)
    assert "| LPIPS | n/a |" in md


def test_asymmetry_run_has_only_asymmetry_rows(tmp_path: Path) -> None:
    run = _make_run(tmp_path / "run", method="asymmetry")
    ev = evaluate_run(run, _write_ratings(tmp_path / "r.csv"), n_boot=20)
    assert {r.normalizer for r in ev.rows} == {"asymmetry"}
    assert ev.method == "asymmetry"
    assert ev.headline is not None and ev.headline.normalizer == "asymmetry"
    assert ev.headline.spearman_rho > 0.9
    assert any("GAN rows" in n and "--method asymmetry" in n for n in ev.notes)
    assert "Asymmetry" in grid_markdown(ev) and "With adaptation" not in grid_markdown(ev)


def test_user_mask_replaces_both_regions(tmp_path: Path) -> None:
    pytest.importorskip("cleftscore.face.roi")
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[40:54, 22:42] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    run = _make_run(tmp_path / "run", mask_file=str(tmp_path / "mask.png"))
    ev = evaluate_run(run, _write_ratings(tmp_path / "r.csv"), n_boot=20)
    by_key = {r.key: r for r in ev.rows}
    for nz in ("gan-adapted", "asymmetry"):
        mouth, face = by_key[(nz, "pse", "+both", "mouth")], by_key[(nz, "pse", "+both", "face")]
        assert mouth.scores == face.scores
    assert any("user mask mask.png replaces mouth and face" in n for n in ev.notes)


def test_too_few_rated_photos_is_a_clear_error(gan_run, tmp_path: Path) -> None:
    run, _ = gan_run
    p = tmp_path / "r.csv"
    p.write_text("file,rating\np00.jpg,1\np01.jpg,2\nother.jpg,3\n")
    with pytest.raises(CleftscoreError, match=r"only 2 scored photo\(s\) have a rating.*other.jpg"):
        evaluate_run(run, p)


def test_not_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(CleftscoreError, match="not a cleftscore run folder"):
        evaluate_run(tmp_path, {"a": 1.0, "b": 2.0, "c": 3.0})


def test_write_evaluation_files(gan_eval, tmp_path: Path) -> None:
    files = write_evaluation(gan_eval, tmp_path / "ev")
    with files.grid_csv.open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(gan_eval.rows)
    assert {
        "normalizer",
        "metric",
        "variant",
        "region",
        "n",
        "pearson_r",
        "pearson_ci_low",
        "pearson_ci_high",
        "spearman_rho",
        "spearman_ci_low",
        "spearman_ci_high",
    } <= set(rows[0])
    md = files.grid_md.read_text()
    assert md.count("| Heat map | Mouth Base | Mouth +YCbCr | Mouth +Erosion | Mouth +Both | Face Base |") == 3
    head = gan_eval.headline
    assert "| PSE | " in md and f"{head.pearson_r * 100:.1f}" in md
    summary = json.loads(files.summary_json.read_text())
    assert summary["headline"]["pearson_r"] == pytest.approx(head.pearson_r)
    assert summary["n_rated"] == len(AMPLITUDES)
    assert "ghost.png" in summary["missing_in_run"]
    best = gan_eval.best(1)[0]
    assert summary["scatter_row"]["pearson_r"] == pytest.approx(best.pearson_r)
    img = np.asarray(Image.open(files.scatter_png))
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    assert img.std() > 5  # not blank


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def test_cli_evaluate_writes_files(gan_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cleftscore.cli import app

    monkeypatch.setenv("CLEFTSCORE_VGG16", str(tmp_path / "absent_vgg16.pth"))
    monkeypatch.setenv("CLEFTSCORE_HOME", str(tmp_path / "home"))
    run, ratings = gan_run
    out = tmp_path / "evaluation"
    result = CliRunner().invoke(
        app, ["evaluate", str(run), "--ratings", str(ratings), "--n-boot", "50", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    for name in ("grid.csv", "grid.md", "summary.json", "scatter.png"):
        assert (out / name).is_file(), name
    assert "headline" in result.output and "gan-adapted" in result.output
    assert "ghost.png" in result.output and "unrated.jpg" in result.output
    assert "n/a" in (out / "grid.md").read_text()


def test_cli_evaluate_bad_ratings_is_one_red_line(gan_run, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cleftscore.cli import app

    run, _ = gan_run
    bad = tmp_path / "bad.csv"
    bad.write_text("file,grade\na.jpg,3\n")
    result = CliRunner().invoke(app, ["evaluate", str(run), "--ratings", str(bad)])
    assert result.exit_code == 1
    assert "missing column(s) rating" in result.output
    assert "Traceback" not in result.output


def test_asymmetry_rows_use_the_same_normalizer_as_score(shared_faces: Path) -> None:
    # evaluate goes through the mirror normalizer's door, frontal check included: a face that
    # `score --method asymmetry` refuses gives no asymmetry score here either.
    from cleftscore.evaluate.photos import mirror_reference
    from cleftscore.face.prepare import prepare_photo

    profile = prepare_photo(shared_faces / "elderly_group_7faces_east_asian.jpg", size=256).aligned
    with pytest.raises(CleftscoreError, match="turned too far"):
        mirror_reference(profile.image, profile.landmarks)
    frontal = prepare_photo(shared_faces / "glasses_south_asian_male_blue_bg.jpg", size=256).aligned
    assert mirror_reference(frontal.image, frontal.landmarks).shape == (256, 256, 3)
