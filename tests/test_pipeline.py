"""End-to-end tests of the pipeline and the ``score`` / ``rescore`` commands on real photos."""

from __future__ import annotations

import csv
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cleftscore.cli import app
from cleftscore.errors import CleftscoreError
from cleftscore.heatmap import DifferenceSettings
from cleftscore.normalize.gan import GanSettings
from cleftscore.run.folder import read_record, write_run_summary
from cleftscore.run.inputs import find_inputs, photo_ids
from cleftscore.run.pipeline import score_photos
from cleftscore.run.rescore import rescore_run
from cleftscore.run.settings import PipelineSettings, ProgressHooks
from cleftscore.score.paper import ScoreSettings

PHOTO_FILES = [
    "aligned.png",
    "normalized.png",
    "heatmap.png",
    "overlay.png",
    "overlay_original.png",
    "panel.png",
    "thumb.jpg",
    "result.json",
]
ASYM = PipelineSettings(method="asymmetry", size=256)


@pytest.fixture()
def batch_dir(tmp_path: Path, local_faces: Path) -> Path:
    """Two good photos, a photo with no face, and a broken file."""
    d = tmp_path / "photos"
    d.mkdir()
    shutil.copy(local_faces / "tiny_128px_portrait_uniform.jpg", d / "hopper.jpg")
    shutil.copy(local_faces / "grayscale_tiny_128px_portrait.jpg", d / "hopper_gray.jpg")
    Image.fromarray(np.full((200, 200, 3), 120, np.uint8)).save(d / "blank_wall.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return d


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:  # Excel-friendly BOM
        return list(csv.DictReader(f))


def test_photo_ids_are_unique_and_folder_safe() -> None:
    ids = photo_ids([Path("a/x y.jpg"), Path("b/x y.jpg"), Path("c/z.png")])
    assert ids == ["x_y", "x_y-2", "z"]


def test_asymmetry_batch_scores_good_photos_and_lists_failures(batch_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    results = score_photos([batch_dir], ASYM, out_dir=out)
    by_name = {Path(r.file).name: r for r in results}
    assert set(by_name) == {"hopper.jpg", "hopper_gray.jpg", "blank_wall.png", "broken.jpg"}
    for name in ("hopper.jpg", "hopper_gray.jpg"):
        r = by_name[name]
        assert r.ok, r.message
        assert np.isfinite(r.score)
        assert r.heatmap is None and r.aligned is None  # released: they are in the run folder
        for f in PHOTO_FILES:
            assert (out / "photos" / r.photo_id / f).is_file(), f
    for name in ("blank_wall.png", "broken.jpg"):
        r = by_name[name]
        assert r.status == "failed"
        assert name in r.message and "\n" not in r.message
        # A failed photo's folder holds its record and nothing else.
        assert [p.name for p in (out / "photos" / r.photo_id).iterdir()] == ["result.json"]
    # score_photos wrote the summary itself.
    rows = _read_csv(out / "scores.csv")
    assert [row["status"] for row in rows].count("ok") == 2
    failed = {Path(row["file"]).name: row["message"] for row in rows if row["status"] == "failed"}
    assert set(failed) == {"blank_wall.png", "broken.jpg"}
    assert all(row["method"] == "asymmetry" and row["colorspace"] == "ycbcr" and row["erosion"] == "3" for row in rows)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "hopper.jpg" in html and "broken.jpg" in html
    rec = json.loads((out / "photos" / by_name["hopper.jpg"].photo_id / "result.json").read_text())
    assert rec["record_version"] == 2
    assert rec["settings"]["method"] == "asymmetry" and rec["score"] == pytest.approx(by_name["hopper.jpg"].score)
    assert len(rec["geometry"]["landmarks_aligned"]) == 68
    # The landmark-level asymmetry index travels to result.json and the CSV; failed photos have none.
    asym = rec["measures"]["landmark_asymmetry_px"]["value"]
    assert asym == pytest.approx(by_name["hopper.jpg"].landmark_asymmetry_px)
    assert 0 < asym < 256
    by_row = {Path(row["file"]).name: row for row in rows}
    assert float(by_row["hopper.jpg"]["landmark_asymmetry_px"]) == pytest.approx(asym, abs=1e-3)
    assert by_row["broken.jpg"]["landmark_asymmetry_px"] == ""


def test_api_without_a_run_folder_keeps_the_arrays(local_faces: Path) -> None:
    (res,) = score_photos([local_faces / "tiny_128px_portrait_uniform.jpg"], ASYM)
    assert res.ok and res.heatmap.shape == (256, 256) and res.heatmap.dtype == np.float32
    assert res.aligned.shape == res.normalized.shape == (256, 256, 3)


def test_rescore_changes_scores_and_never_rewrites_what_it_read(batch_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = score_photos([batch_dir / "hopper.jpg"], ASYM, out_dir=out)
    d = out / "photos" / "hopper"
    normalized_before = (d / "normalized.png").read_bytes()
    old_record = d / "result.json"
    old_text, old_inode = old_record.read_text(), old_record.stat().st_ino
    kept = d / "result.json"
    held = open(kept, encoding="utf-8")  # a reader holding the old record open
    no_erosion = ScoreSettings(roi="mouth", difference=DifferenceSettings(metric="pse", colorspace="ycbcr", erosion=0))
    again = rescore_run(out, no_erosion)
    assert again[0].ok
    # Erosion only lowers the map, so switching it off never raises the score.
    assert again[0].score <= first[0].score + 1e-9
    assert (d / "normalized.png").read_bytes() == normalized_before
    # The old record was replaced by a new file, not rewritten: its reader still sees it whole.
    assert held.read() == old_text
    held.close()
    assert (d / "result.json").stat().st_ino != old_inode
    rec = json.loads((d / "result.json").read_text())
    assert rec["settings"]["score"]["difference"]["erosion"] == 0
    # Normalization-side results survive a rescore.
    assert rec["measures"]["landmark_asymmetry_px"]["value"] == pytest.approx(first[0].landmark_asymmetry_px)
    # Every picture made before the score (the nasolabial measures' picture too) is still listed and there.
    for name in ("aligned.png", "normalized.png", "measures.png"):
        assert name in rec["pictures"] and (d / name).is_file(), name
    # The same settings again: nothing to do, the folder is kept as it is.
    inode = (d / "result.json").stat().st_ino
    rescore_run(out, no_erosion)
    assert (d / "result.json").stat().st_ino == inode


def test_score_cli_example_runs_offline(tmp_path: Path) -> None:
    out = tmp_path / "example-run"
    result = CliRunner().invoke(
        app, ["score", "--example", "--method", "asymmetry", "--size", "256", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = _read_csv(out / "scores.csv")
    assert len(rows) == 1 and rows[0]["status"] == "ok"
    assert (out / "report.html").is_file()
    assert (out / "photos" / "astronaut" / "overlay_original.png").is_file()


def test_score_cli_without_gan_weights_names_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_faces: Path
) -> None:
    monkeypatch.setenv("CLEFTSCORE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("CLEFTSCORE_GENERATOR", raising=False)
    result = CliRunner().invoke(
        app, ["score", str(local_faces / "tiny_128px_portrait_uniform.jpg"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "--method asymmetry" in result.output and "weights fetch" in result.output


def test_score_cli_all_failed_exits_nonzero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    result = CliRunner().invoke(app, ["score", str(bad), "--method", "asymmetry", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "bad.png" in result.output and "Traceback" not in result.output
    rows = _read_csv(tmp_path / "o" / "scores.csv")
    assert rows[0]["status"] == "failed"


def test_folders_are_searched_recursively_and_ids_keep_the_sub_folder(tmp_path: Path, local_faces: Path) -> None:
    root = tmp_path / "clinic"
    for patient in ("patient1", "patient2"):
        (root / patient).mkdir(parents=True)
        shutil.copy(local_faces / "tiny_128px_portrait_uniform.jpg", root / patient / "front.jpg")
    (root / ".hidden").mkdir()
    shutil.copy(local_faces / "tiny_128px_portrait_uniform.jpg", root / ".hidden" / "x.jpg")
    found = find_inputs([root])
    assert [f.photo_id for f in found] == ["patient1__front", "patient2__front"]
    out = tmp_path / "run"
    results = score_photos([root], ASYM, out_dir=out)
    assert [r.ok for r in results] == [True, True]
    assert sorted(p.name for p in (out / "photos").iterdir()) == ["patient1__front", "patient2__front"]
    # Nothing usable anywhere: one clear message, not a row that says "is a folder".
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(CleftscoreError, match="no image files found in .*sub-folders"):
        score_photos([tmp_path / "empty"], ASYM, out_dir=tmp_path / "run2")


def test_csv_cells_that_a_spreadsheet_would_evaluate_are_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bad = Path("=1+2.jpg")  # as typed on the command line: the file cell starts with "="
    bad.write_bytes(b"not an image")
    out = tmp_path / "run"
    score_photos([bad, Path("@SUM(A1).png"), Path("-2+3.jpg")], ASYM, out_dir=out)
    text = (out / "scores.csv").read_text(encoding="utf-8-sig")
    rows = _read_csv(out / "scores.csv")
    assert [r["file"] for r in rows] == ["'=1+2.jpg", "'@SUM(A1).png", "'-2+3.jpg"]
    assert rows[0]["message"].startswith("'=1+2.jpg: ")
    assert all(not cell.startswith(("=", "+", "@", "\t", "\r")) for row in rows for cell in row.values())
    assert ",=" not in text and "\n=" not in text


def test_a_failed_photo_replaces_every_picture_of_the_earlier_one(tmp_path: Path, local_faces: Path) -> None:
    a = tmp_path / "a" / "p1.jpg"
    a.parent.mkdir()
    shutil.copy(local_faces / "tiny_128px_portrait_uniform.jpg", a)
    out = tmp_path / "run"
    assert score_photos([a], ASYM, out_dir=out)[0].ok
    assert (out / "photos" / "p1" / "aligned.png").is_file()
    b = tmp_path / "b" / "p1.jpg"  # another patient's photo with the same id, which fails
    b.parent.mkdir()
    Image.fromarray(np.full((200, 200, 3), 120, np.uint8)).save(b, format="JPEG")
    (res,) = score_photos([b], ASYM, out_dir=out)
    assert res.status == "failed"
    assert [p.name for p in (out / "photos" / "p1").iterdir()] == ["result.json"]
    assert read_record(out, "p1").file == str(b)
    html = (out / "report.html").read_text(encoding="utf-8")
    row = html[html.index("p1.jpg") :]
    row = row[: row.index("</tr>")]
    assert "<img" not in row and "data:image" not in row


def test_a_second_run_into_the_same_folder_stops_at_once(tmp_path: Path, local_faces: Path) -> None:
    import subprocess
    import sys

    first = tmp_path / "first" / "p.jpg"
    first.parent.mkdir()
    shutil.copy(local_faces / "tiny_128px_portrait_uniform.jpg", first)
    second = tmp_path / "second" / "p.jpg"  # another face under the same photo id
    second.parent.mkdir()
    shutil.copy(local_faces / "grayscale_tiny_128px_portrait.jpg", second)
    out, started, go = tmp_path / "run", tmp_path / "started", tmp_path / "go"
    # The first run stops inside its first photo until the test says go, so the two overlap
    # for sure, whatever the machine's speed.
    script = f"""
import time
from pathlib import Path
from cleftscore.run.pipeline import score_photos
from cleftscore.run.settings import PipelineSettings, ProgressHooks
def done(res):
    Path({str(started)!r}).touch()
    for _ in range(6000):
        if Path({str(go)!r}).exists():
            return
        time.sleep(0.01)
score_photos([{str(first)!r}], PipelineSettings(method="asymmetry", size=256), out_dir={str(out)!r}, hooks=ProgressHooks(photo_done=done))
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(6000):
            if started.exists() or proc.poll() is not None:
                break
            threading.Event().wait(0.01)
        assert started.exists(), "the first run did not start"
        result = CliRunner().invoke(
            app, ["score", str(second), "--method", "asymmetry", "--size", "256", "--out", str(out)]
        )
        assert result.exit_code == 1
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and "another cleftscore run" in lines[0], result.output
    finally:
        go.touch()
        assert proc.wait(timeout=120) == 0
    rec = read_record(out, "p")
    assert rec.ok and rec.file == str(first)
    from cleftscore.face.prepare import prepare_photo
    from cleftscore.io import load_image

    aligned = load_image(out / "photos" / "p" / "aligned.png")
    assert np.array_equal(aligned, prepare_photo(first, size=256).aligned.image)
    assert [r["file"] for r in _read_csv(out / "scores.csv")] == [str(first)]


def test_unreadable_records_are_failed_rows_and_are_left_alone(tmp_path: Path, batch_dir: Path) -> None:
    out = tmp_path / "run"
    score_photos([batch_dir / "hopper.jpg", batch_dir / "hopper_gray.jpg"], ASYM, out_dir=out)
    damaged = out / "photos" / "hopper_gray" / "result.json"
    damaged.write_text('{"file": "hopper_gray.jpg", "sta')
    seen: list = []
    results = rescore_run(out, ScoreSettings(roi="face"), hooks=ProgressHooks(photo_done=seen.append))
    assert [r.ok for r in results] == [True, False]
    assert "unreadable record" in seen[1].message and str(damaged) in seen[1].message
    assert damaged.read_text() == '{"file": "hopper_gray.jpg", "sta'
    rows = {r["photo_id"]: r for r in _read_csv(out / "scores.csv")}
    assert rows["hopper_gray"]["status"] == "failed" and "unreadable" in rows["hopper_gray"]["message"]
    result = CliRunner().invoke(app, ["rescore", str(out), "--roi", "mouth"])
    assert "unreadable record" in result.output


def test_an_interrupted_rescore_marks_the_rows_it_did_not_reach_as_stale(tmp_path: Path, batch_dir: Path) -> None:
    out = tmp_path / "run"
    for i in range(4):
        shutil.copy(batch_dir / "hopper.jpg", tmp_path / f"p{i}.jpg")
    score_photos([tmp_path / f"p{i}.jpg" for i in range(4)], ASYM, out_dir=out)

    def interrupt(res) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rescore_run(out, ScoreSettings(roi="face"), hooks=ProgressHooks(photo_done=interrupt))
    rows = list(_read_csv(out / "scores.csv"))
    assert [r["photo_id"] for r in rows] == ["p0", "p1", "p2", "p3"]
    assert rows[0]["status"] == "ok" and rows[0]["roi"] == "face"
    stale = rows[-1]  # at most two photos (the workers) were under way when it stopped
    assert stale["status"] == "stale" and stale["score"] == ""
    assert "score.roi=mouth (not face)" in stale["message"]
    assert all(r["status"] == "stale" or r["roi"] == "face" for r in rows)  # never an unmarked mix


def test_calibration_only_from_given_ratings(tmp_path: Path, local_faces: Path, example_photo: Path) -> None:
    photos = [
        local_faces / "tiny_128px_portrait_uniform.jpg",
        local_faces / "grayscale_tiny_128px_portrait.jpg",
        local_faces / "exif_orientation6_tiny_portrait.jpg",
        example_photo,
    ]
    out = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(
        app, ["score", *map(str, photos), "--method", "asymmetry", "--size", "256", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = _read_csv(out / "scores.csv")
    assert all(row["calibrated_rating"] == "" for row in rows)  # no ratings, no scale
    scores = {Path(r["file"]).name: float(r["score"]) for r in rows}
    ratings = tmp_path / "ratings.csv"
    # Ratings that follow the scores exactly (paper direction: 7 = normal) for three photos.
    rated = sorted(scores, key=scores.get)[:3]
    ratings.write_text("file,rating\n" + "".join(f"{n},{2 + 2 * i}\n" for i, n in enumerate(rated)))
    result = runner.invoke(app, ["rescore", str(out), "--calibrate", str(ratings)])
    assert result.exit_code == 0, result.output
    rows = {Path(r["file"]).name: r for r in _read_csv(out / "scores.csv")}
    cal = [float(rows[n]["calibrated_rating"]) for n in rated]
    assert cal == sorted(cal) and 1.0 <= min(cal) and max(cal) <= 7.0
    sev = [float(rows[n]["severity_0_100"]) for n in rated]
    assert sev == sorted(sev, reverse=True)  # more normal -> less severe
    assert (out / "calibration.json").is_file()


def test_odd_inputs_fail_alone_and_the_batch_goes_on(tmp_path: Path, local_faces: Path) -> None:
    import os

    d = tmp_path / "in"
    d.mkdir()
    good = (local_faces / "tiny_128px_portrait_uniform.jpg").read_bytes()
    # A file name in a foreign (Latin-1) encoding, as copied from an old camera card.
    with open(os.path.join(os.fsencode(d), b"M\xfcller.jpg"), "wb") as f:
        f.write(good)
    (d / "ok.jpg").write_bytes(good)
    (tmp_path / "empty.jpg").mkdir()  # a folder that looks like a photo
    out = tmp_path / "run"
    results = score_photos([d, tmp_path / "empty.jpg"], ASYM, out_dir=out)
    assert [r.ok for r in results] == [True, True, False]
    assert "empty.jpg" in results[2].message and "\n" not in results[2].message
    rows = _read_csv(write_run_summary(out, [r.photo_id for r in results])[0])
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]


def test_snapshot_steps_are_checked_before_any_gan_work() -> None:
    with pytest.raises(ValueError, match="outside 0..50"):
        GanSettings(adapt_steps=50, snapshot_steps=(0, 25, 100))


def test_asymmetry_refuses_a_face_in_profile(tmp_path: Path, shared_faces: Path) -> None:
    # The largest face of this group photo is turned almost to profile: its mirror image cannot
    # be registered (the "normalized" face came out a flat colour and still got a score). It
    # must fail with a clear reason, while frontal faces in the same batch are scored.
    photos = [
        shared_faces / "elderly_group_7faces_east_asian.jpg",
        shared_faces / "glasses_south_asian_male_blue_bg.jpg",
    ]
    results = score_photos(photos, ASYM, out_dir=tmp_path / "run")
    profile, frontal = results
    assert profile.status == "failed" and profile.score is None
    assert "turned too far" in profile.message and "elderly_group_7faces_east_asian.jpg" in profile.message
    assert "\n" not in profile.message
    assert frontal.ok and frontal.landmark_asymmetry_px < 0.1 * 256


def test_public_api_from_the_package_root() -> None:
    import subprocess
    import sys

    code = (
        "import sys, cleftscore\n"
        "assert 'torch' not in sys.modules, 'import cleftscore imported torch'\n"
        "names = dir(cleftscore)\n"
        "assert {'score_photos', 'rescore_run', 'PipelineSettings', 'GanSettings', 'ScoreSettings', 'PhotoResult'} <= set(names), names\n"
        "import cleftscore.gan as gan\n"
        "assert 'torch' not in sys.modules\n"
        "assert {'load_generator', 'Generator', 'invert', 'adapt', 'InversionSettings', 'AdaptSettings'} <= set(dir(gan))\n"
        "from cleftscore.gan import load_generator\n"
        "from cleftscore.gan.checkpoints import load_generator as real\n"
        "assert load_generator is real and callable(cleftscore.score_photos)\n"
        "import cleftscore.gan.adapt, cleftscore.gan.invert\n"
        "from cleftscore.gan import adapt, invert\n"
        "assert callable(adapt) and callable(invert) and gan.adapt is adapt and adapt.__name__ == 'adapt'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- GAN method on the shared tiny generator ------------------------------------------------


@pytest.fixture(scope="session")
def random_vgg16_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VGG16 state dict with random weights, in torchvision's key names (trunk only)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    features = torchvision.models.vgg16(weights=None).features
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    path = tmp_path_factory.mktemp("vgg") / "vgg16-random.pth"
    torch.save(state, path)
    return path


def _gan(generator: Path, **kw) -> PipelineSettings:
    return PipelineSettings(method="gan", gan=GanSettings(generator=str(generator), loss="mse", device="cpu", **kw))


@pytest.mark.slow
def test_gan_score_cli_end_to_end_with_cache(
    tmp_path: Path, batch_dir: Path, random_vgg16_file: Path, tiny_generator_file: Path
) -> None:
    out = tmp_path / "run"
    args = [
        "score",
        str(batch_dir),
        "--method",
        "gan",
        "--generator",
        str(tiny_generator_file),
        "--vgg16",
        str(random_vgg16_file),
        "--steps",
        "8",
        "--adapt-steps",
        "3",
        "--snapshot-steps",
        "0,3",
        "--batch",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {Path(r["file"]).name: r for r in _read_csv(out / "scores.csv")}
    assert rows["hopper.jpg"]["status"] == "ok" and rows["hopper_gray.jpg"]["status"] == "ok"
    assert rows["blank_wall.png"]["status"] == "failed" and rows["broken.jpg"]["status"] == "failed"
    for name in ("hopper", "hopper_gray"):
        d = out / "photos" / name
        for f in PHOTO_FILES + ["inverted.png"]:
            assert (d / f).is_file(), f
        assert (d / "snapshots" / "step_0003.png").is_file()
        rec = json.loads((d / "result.json").read_text())
        assert (
            rec["geometry"]["size"] == 32
            and rec["environment"]["generator_sha256"]
            and rec["settings"]["gan"]["steps"] == 8
        )
        assert rec["cached"] is False
        # how the steps ran: all 8, ordinary steps and no fused GPU kernels on a CPU
        norm = rec["normalization"]
        assert norm["inversion_steps_run"] == 8 and norm["inversion_step_mode"] == "eager"
        assert norm["fused_gpu_kernels"] is False and norm["final_inversion_loss"] > 0
    first = json.loads((out / "photos" / "hopper" / "result.json").read_text())
    # The same command again reuses the cached normalization and gives the same scores.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    rows2 = {Path(r["file"]).name: r for r in _read_csv(out / "scores.csv")}
    assert rows2["hopper.jpg"]["cached"] == "true"
    again_rec = json.loads((out / "photos" / "hopper" / "result.json").read_text())
    assert again_rec["cached"] is True and again_rec["normalization"] == first["normalization"]
    assert rows2["hopper.jpg"]["score"] == rows["hopper.jpg"]["score"]


@pytest.mark.slow
def test_a_damaged_cache_entry_is_reported_once_and_recomputed(
    tmp_path: Path, batch_dir: Path, tiny_generator_file: Path
) -> None:
    settings = _gan(tiny_generator_file, steps=3, adapt_steps=1)
    cache = tmp_path / "cache"
    photo = [batch_dir / "hopper.jpg"]
    (first,) = score_photos(photo, settings, out_dir=tmp_path / "r1", cache_dir=cache)
    (entry,) = [p.parent for p in cache.glob("*/*/meta.json")]
    for damage in ("another valid image", "wrong size"):
        img = np.asarray(Image.open(entry / "normalized.png"))
        if damage == "wrong size":
            img = np.concatenate([img, img])  # twice as tall
        else:
            img = 255 - img
        Image.fromarray(img).save(entry / "normalized.png")
        messages: list[str] = []
        (res,) = score_photos(
            photo, settings, out_dir=tmp_path / "r2", cache_dir=cache, hooks=ProgressHooks(message=messages.append)
        )
        assert res.ok and not res.cached, damage
        assert res.score == pytest.approx(first.score), damage
        assert len([m for m in messages if "cache entry" in m and "damaged" in m]) == 1, messages
        # recomputed and stored again: the next run uses it silently
        messages.clear()
        (res,) = score_photos(
            photo, settings, out_dir=tmp_path / "r3", cache_dir=cache, hooks=ProgressHooks(message=messages.append)
        )
        assert res.cached and not any("damaged" in m for m in messages)


def test_outputs_of_a_batch_are_made_while_the_next_batch_runs(
    tmp_path: Path, batch_dir: Path, tiny_generator_file: Path
) -> None:
    # Batches of one photo: the first photo's heat map, score and files must be made on the
    # worker thread while the GAN steps of the second photo run, and photos finish in order.
    # No clock: the first photo's photo_done waits until a step of the second batch has been
    # issued, and those steps wait until that photo_done has begun. If the device waited for
    # the outputs, the first wait would run out.
    steps_per_batch = 6 + 1
    done_started, stepped_meanwhile = threading.Event(), threading.Event()
    count = {"steps": 0}
    seen: list[tuple[str, str, bool]] = []

    def photo_done(res) -> None:
        first = not done_started.is_set()
        done_started.set()
        overlapped = stepped_meanwhile.wait(timeout=300) if first else True
        seen.append((Path(res.file).name, threading.current_thread().name, overlapped))

    def gan_step(n: int) -> None:
        count["steps"] += n
        if count["steps"] > steps_per_batch:  # a step of the second batch
            done_started.wait(timeout=300)
            stepped_meanwhile.set()

    settings = _gan(tiny_generator_file, steps=6, adapt_steps=1, batch=1)
    good = [batch_dir / "hopper.jpg", batch_dir / "hopper_gray.jpg"]
    results = score_photos(good, settings, out_dir=tmp_path / "run", cache_dir=tmp_path / "cache",
                           hooks=ProgressHooks(photo_done=photo_done, gan_step=gan_step))  # fmt: skip
    assert [r.status for r in results] == ["ok", "ok"]
    assert [s[0] for s in seen] == ["hopper.jpg", "hopper_gray.jpg"]
    assert all(s[1].startswith("cleftscore-outputs") for s in seen)
    assert seen[0][2], "the second photo's GAN steps waited for the first photo's outputs"
    assert all((tmp_path / "run" / "photos" / p.stem / "result.json").is_file() for p in good)


@pytest.mark.slow
def test_progress_ends_at_its_total_after_a_batch_runs_out_of_memory(
    tmp_path: Path, batch_dir: Path, monkeypatch, tiny_generator_file: Path
) -> None:
    # A batch of two runs out of GPU memory part-way; it is split and retried. The steps of the
    # failed attempt are taken back and the total grows by one batch: the bar ends at 100 %.
    import torch

    from cleftscore.normalize.gan import GanNormalizer

    real = GanNormalizer.run_batch

    def flaky(self, aligned, keys, report=None):
        if len(aligned) > 1:
            report(7)  # some steps went by before memory ran out
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, aligned, keys, report)

    monkeypatch.setattr(GanNormalizer, "run_batch", flaky)
    seen = {"total": 0, "steps": 0, "messages": []}

    def start(n_photos: int, total: int) -> None:
        seen["total"] = total

    def step(n: int) -> None:
        seen["steps"] += n

    def grow(n: int) -> None:
        seen["total"] += n

    hooks = ProgressHooks(gan_start=start, gan_step=step, gan_grow=grow, message=seen["messages"].append)
    results = score_photos([batch_dir / "hopper.jpg", batch_dir / "hopper_gray.jpg"], _gan(tiny_generator_file, steps=6, adapt_steps=2, batch=2),
                           out_dir=tmp_path / "run", cache_dir=tmp_path / "cache", hooks=hooks)  # fmt: skip
    assert [r.status for r in results] == ["ok", "ok"]
    assert any("retrying in batches of 1" in m for m in seen["messages"])
    assert seen["total"] == 2 * (6 + 2)  # one batch planned, split in two
    assert seen["steps"] == seen["total"]


@pytest.mark.slow
def test_progress_ends_at_its_total_when_adaptation_runs_photo_by_photo(
    tmp_path: Path, batch_dir: Path, monkeypatch, tiny_generator_file: Path
) -> None:
    # Adaptation of a batch falls back to one photo at a time (out of GPU memory): each photo
    # reports steps 1..N again, which must not count twice. Photos that turn out unusable or
    # cached take their planned steps back.
    import importlib

    import torch

    adapt_mod = importlib.import_module("cleftscore.gan.adapt")

    def no_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(adapt_mod, "_adapt_vmap", no_memory)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    seen = {"total": 0, "steps": 0}
    hooks = ProgressHooks(gan_start=lambda n, total: seen.update(total=total),
                          gan_grow=lambda n: seen.update(total=seen["total"] + n),
                          gan_step=lambda n: seen.update(steps=seen["steps"] + n))  # fmt: skip
    photos = [
        batch_dir / "hopper.jpg",
        batch_dir / "hopper_gray.jpg",
        batch_dir / "broken.jpg",
        batch_dir / "blank_wall.png",
    ]
    results = score_photos(photos, _gan(tiny_generator_file, steps=4, adapt_steps=3, batch=2),
                           out_dir=tmp_path / "run", cache_dir=tmp_path / "cache", hooks=hooks)  # fmt: skip
    assert [r.status for r in results] == ["ok", "ok", "failed", "failed"]
    assert seen["total"] == 4 + 3 and seen["steps"] == seen["total"]


def test_a_run_folder_of_the_earlier_layout_is_rescored(tmp_path: Path, batch_dir: Path) -> None:
    # Version-1 records were flat and listed no pictures; rescore reads them, keeps the
    # pictures that are there and writes a version-2 record.
    out = tmp_path / "run"
    score_photos([batch_dir / "hopper.jpg"], ASYM, out_dir=out)
    d = out / "photos" / "hopper"
    rec = json.loads((d / "result.json").read_text())
    flat = {
        k: rec[k] for k in ("file", "photo_id", "status", "message", "method", "score", "settings", "notes", "timings")
    }
    flat.update(
        rec["geometry"], landmark_asymmetry_px=rec["measures"]["landmark_asymmetry_px"]["value"], **rec["environment"]
    )
    (d / "thumb.jpg").unlink()
    (d / "result.json").write_text(json.dumps(flat))
    aligned = (d / "aligned.png").read_bytes()
    (res,) = rescore_run(out, ScoreSettings(roi="face"))
    assert res.ok, res.message
    new = read_record(out, "hopper")
    assert new.to_json()["record_version"] == 2 and new.settings["score"]["roi"] == "face"
    assert new.measures["landmark_asymmetry_px"].value == pytest.approx(flat["landmark_asymmetry_px"])
    assert (d / "aligned.png").read_bytes() == aligned and (d / "thumb.jpg").is_file()


def test_a_normalizer_of_ones_own_goes_through_the_same_door(tmp_path: Path, batch_dir: Path) -> None:
    # Anything with the Normalizer interface can be plugged in; its measures reach the record
    # and the CSV without touching the run-folder code.
    from cleftscore.normalize import Measure, Normalization

    class Flip:
        name, batch_size, resolution = "asymmetry", 2, None
        seen: list[int] = []

        def describe(self):
            return {"normalizer": "flip"}

        def cached(self, face):
            return None

        def plan(self, n_faces):
            pass

        def close(self):
            pass

        def normalize(self, faces):
            self.seen.append(len(faces))
            return [
                Normalization(
                    image=np.ascontiguousarray(f.image[:, ::-1]), measures={"flip_energy": Measure(1.5, "test")}
                )
                for f in faces
            ]

    flip = Flip()
    out = tmp_path / "run"
    photos = [batch_dir / "hopper.jpg", batch_dir / "hopper_gray.jpg", batch_dir / "broken.jpg"]
    results = score_photos(photos, ASYM, out_dir=out, normalizer_factory=lambda progress: flip)
    assert [r.ok for r in results] == [True, True, False] and flip.seen == [2]
    rows = _read_csv(out / "scores.csv")
    assert [r["flip_energy"] for r in rows] == ["1.500", "1.500", ""]
    assert read_record(out, "hopper").measures["flip_energy"].value == 1.5
