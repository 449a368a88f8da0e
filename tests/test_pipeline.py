"""End-to-end tests of the pipeline and the ``score`` / ``rescore`` commands on real photos."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cleftscore.cli import app
from cleftscore.heatmap import DifferenceSettings
from cleftscore.pipeline import PipelineSettings, photo_ids, rescore_run, score_photos, write_run_summary
from cleftscore.score import ScoreSettings

PHOTO_FILES = ["aligned.png", "normalized.png", "heatmap.png", "overlay.png", "overlay_original.png", "panel.png", "result.json"]


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
    settings = PipelineSettings(method="asymmetry", size=256)
    results = score_photos([batch_dir], settings, out_dir=out)
    by_name = {Path(r.file).name: r for r in results}
    assert set(by_name) == {"hopper.jpg", "hopper_gray.jpg", "blank_wall.png", "broken.jpg"}
    for name in ("hopper.jpg", "hopper_gray.jpg"):
        r = by_name[name]
        assert r.ok, r.message
        assert np.isfinite(r.score)
        assert r.heatmap.shape == (256, 256) and r.heatmap.dtype == np.float32
        for f in PHOTO_FILES:
            assert (out / "photos" / r.photo_id / f).is_file(), f
    for name in ("blank_wall.png", "broken.jpg"):
        r = by_name[name]
        assert r.status == "failed"
        assert name in r.message and "\n" not in r.message
    csv_path, html_path = write_run_summary(out, [r.photo_id for r in results])
    rows = _read_csv(csv_path)
    assert [row["status"] for row in rows].count("ok") == 2
    failed = {Path(row["file"]).name: row["message"] for row in rows if row["status"] == "failed"}
    assert set(failed) == {"blank_wall.png", "broken.jpg"}
    assert all(row["method"] == "asymmetry" and row["colorspace"] == "ycbcr" and row["erosion"] == "3" for row in rows)
    html = html_path.read_text(encoding="utf-8")
    assert "hopper.jpg" in html and "broken.jpg" in html
    rec = json.loads((out / "photos" / by_name["hopper.jpg"].photo_id / "result.json").read_text())
    assert rec["settings"]["method"] == "asymmetry" and rec["score"] == pytest.approx(by_name["hopper.jpg"].score)
    assert len(rec["landmarks_aligned"]) == 68
    # The landmark-level asymmetry index travels to result.json and the CSV; failed photos have none.
    assert rec["landmark_asymmetry_px"] == pytest.approx(by_name["hopper.jpg"].landmark_asymmetry_px)
    assert 0 < rec["landmark_asymmetry_px"] < 256
    by_row = {Path(row["file"]).name: row for row in rows}
    assert float(by_row["hopper.jpg"]["landmark_asymmetry_px"]) == pytest.approx(rec["landmark_asymmetry_px"], abs=1e-3)
    assert by_row["broken.jpg"]["landmark_asymmetry_px"] == ""


def test_rescore_changes_scores_without_normalizing_again(batch_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = score_photos([batch_dir / "hopper.jpg"], PipelineSettings(method="asymmetry", size=256), out_dir=out)
    normalized_before = (out / "photos" / "hopper" / "normalized.png").read_bytes()
    no_erosion = ScoreSettings(roi="mouth", difference=DifferenceSettings(metric="pse", colorspace="ycbcr", erosion=0))
    again = rescore_run(out, no_erosion)
    assert again[0].ok
    # Erosion only lowers the map, so switching it off never raises the score.
    assert again[0].score <= first[0].score + 1e-9
    assert (out / "photos" / "hopper" / "normalized.png").read_bytes() == normalized_before
    rec = json.loads((out / "photos" / "hopper" / "result.json").read_text())
    assert rec["settings"]["score"]["difference"]["erosion"] == 0
    # Normalization-side results survive a rescore.
    assert rec["landmark_asymmetry_px"] == pytest.approx(first[0].landmark_asymmetry_px)


def test_score_cli_example_runs_offline(tmp_path: Path) -> None:
    out = tmp_path / "example-run"
    result = CliRunner().invoke(app, ["score", "--example", "--method", "asymmetry", "--size", "256", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = _read_csv(out / "scores.csv")
    assert len(rows) == 1 and rows[0]["status"] == "ok"
    assert (out / "report.html").is_file()
    assert (out / "photos" / "astronaut" / "overlay_original.png").is_file()


def test_score_cli_without_gan_weights_names_both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_faces: Path) -> None:
    monkeypatch.setenv("CLEFTSCORE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("CLEFTSCORE_GENERATOR", raising=False)
    result = CliRunner().invoke(app, ["score", str(local_faces / "tiny_128px_portrait_uniform.jpg"), "--out", str(tmp_path / "o")])
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


# --- GAN method on a small golden generator ----------------------------------------------


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


def _small_generator_file() -> Path:
    """The issue's g64 golden generator; the local t64 one on a fresh clone without ../shared."""
    from conftest import LOCAL_GOLDEN, SHARED_GOLDEN

    g64 = SHARED_GOLDEN / "g64_state_dict.npz"
    return g64 if g64.exists() else LOCAL_GOLDEN / "t64_state_dict.npz"


@pytest.mark.slow
def test_gan_score_cli_end_to_end_with_cache(tmp_path: Path, batch_dir: Path, random_vgg16_file: Path) -> None:
    generator = _small_generator_file()
    out = tmp_path / "run"
    args = [
        "score", str(batch_dir), "--method", "gan", "--generator", str(generator), "--vgg16", str(random_vgg16_file),
        "--steps", "8", "--adapt-steps", "3", "--snapshot-steps", "0,3", "--batch", "2", "--device", "cpu",
        "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
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
        assert rec["size"] == 64 and rec["generator_sha256"] and rec["settings"]["gan"]["steps"] == 8
        assert rec["cached"] is False
        # how the steps ran: all 8, ordinary steps and no fused GPU kernels on a CPU
        norm = rec["normalization"]
        assert norm["inversion_steps_run"] == 8 and norm["inversion_step_mode"] == "eager"
        assert norm["fused_gpu_kernels"] is False and norm["final_inversion_loss"] > 0
    assert (out / "report.html").is_file()
    first = json.loads((out / "photos" / "hopper" / "result.json").read_text())
    # The same command again reuses the cached normalization and gives the same scores.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    rows2 = {Path(r["file"]).name: r for r in _read_csv(out / "scores.csv")}
    assert rows2["hopper.jpg"]["cached"] == "true"
    again_rec = json.loads((out / "photos" / "hopper" / "result.json").read_text())
    assert again_rec["cached"] is True and again_rec["normalization"] == first["normalization"]
    assert rows2["hopper.jpg"]["score"] == rows["hopper.jpg"]["score"]


def test_calibration_only_from_given_ratings(tmp_path: Path, local_faces: Path, example_photo: Path) -> None:
    photos = [
        local_faces / "tiny_128px_portrait_uniform.jpg",
        local_faces / "grayscale_tiny_128px_portrait.jpg",
        local_faces / "exif_orientation6_tiny_portrait.jpg",
        example_photo,
    ]
    out = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(app, ["score", *map(str, photos), "--method", "asymmetry", "--size", "256", "--out", str(out)])
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
    results = score_photos([d, tmp_path / "empty.jpg"], PipelineSettings(method="asymmetry", size=256), out_dir=out)
    assert [r.ok for r in results] == [True, True, False]
    assert "empty.jpg" in results[2].message and "\n" not in results[2].message
    rows = _read_csv(write_run_summary(out, [r.photo_id for r in results])[0])
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]


def test_snapshot_steps_are_checked_before_any_gan_work() -> None:
    from cleftscore.pipeline import GanSettings

    with pytest.raises(ValueError, match="outside 0..50"):
        GanSettings(adapt_steps=50, snapshot_steps=(0, 25, 100))


def test_outputs_of_a_batch_are_made_while_the_next_batch_runs(tmp_path: Path, batch_dir: Path) -> None:
    # Batches of one photo: the first photo's heat map, score and files must be made on the
    # worker thread while the GAN steps of the second photo run, and photos finish in order.
    import threading

    from cleftscore.pipeline import GanSettings, PipelineSettings, ProgressHooks, score_photos

    events: list[tuple[str, str, float]] = []
    first_done = threading.Event()

    def photo_done(res) -> None:
        events.append(("done:" + Path(res.file).name, threading.current_thread().name, time.perf_counter()))
        if res.ok and not first_done.is_set():
            first_done.set()
            time.sleep(1.0)  # a slow disk: the device must not wait for it
            events.append(("slept", threading.current_thread().name, time.perf_counter()))

    def gan_step(n: int) -> None:
        events.append(("step", threading.current_thread().name, time.perf_counter()))

    settings = PipelineSettings(
        method="gan",
        gan=GanSettings(generator=str(_small_generator_file()), steps=25, adapt_steps=2, loss="mse", batch=1, device="cpu"),
    )
    good = [batch_dir / "hopper.jpg", batch_dir / "hopper_gray.jpg"]
    results = score_photos(good, settings, out_dir=tmp_path / "run", cache_dir=tmp_path / "cache",
                           hooks=ProgressHooks(photo_done=photo_done, gan_step=gan_step))  # fmt: skip
    assert [r.status for r in results] == ["ok", "ok"]
    done = [e for e in events if e[0].startswith("done:")]
    assert [e[0] for e in done] == ["done:hopper.jpg", "done:hopper_gray.jpg"]
    assert all(e[1].startswith("cleftscore-outputs") for e in done)
    start = done[0][2]
    end = next(e[2] for e in events if e[0] == "slept")
    steps_meanwhile = [e for e in events if e[0] == "step" and start < e[2] < end]
    assert len(steps_meanwhile) >= 5, "the second photo's GAN steps waited for the first photo's outputs"
    assert all((tmp_path / "run" / "photos" / p.stem / "result.json").is_file() for p in good)


def test_progress_ends_at_its_total_after_a_batch_runs_out_of_memory(tmp_path: Path, batch_dir: Path, monkeypatch) -> None:
    # A batch of two runs out of GPU memory part-way; it is split and retried. The steps of the
    # failed attempt are taken back and the total grows by one batch: the bar ends at 100 %.
    import torch

    from cleftscore import pipeline
    from cleftscore.pipeline import GanSettings, PipelineSettings, ProgressHooks, score_photos

    real = pipeline._GanNormalizer.run_batch

    def flaky(self, aligned, keys, report=None):
        if len(aligned) > 1:
            report(7)  # some steps went by before memory ran out
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, aligned, keys, report)

    monkeypatch.setattr(pipeline._GanNormalizer, "run_batch", flaky)
    seen = {"total": 0, "steps": 0, "messages": []}

    def start(n_photos: int, total: int) -> None:
        seen["total"] = total

    def step(n: int) -> None:
        seen["steps"] += n

    def grow(n: int) -> None:
        seen["total"] += n

    settings = PipelineSettings(
        method="gan",
        gan=GanSettings(generator=str(_small_generator_file()), steps=6, adapt_steps=2, loss="mse", batch=2, device="cpu"),
    )
    hooks = ProgressHooks(gan_start=start, gan_step=step, gan_grow=grow, message=seen["messages"].append)
    results = score_photos([batch_dir / "hopper.jpg", batch_dir / "hopper_gray.jpg"], settings,
                           out_dir=tmp_path / "run", cache_dir=tmp_path / "cache", hooks=hooks)  # fmt: skip
    assert [r.status for r in results] == ["ok", "ok"]
    assert any("retrying in batches of 1" in m for m in seen["messages"])
    assert seen["total"] == 2 * (6 + 2)  # one batch planned, split in two
    assert seen["steps"] == seen["total"]


def test_progress_ends_at_its_total_when_adaptation_runs_photo_by_photo(tmp_path: Path, batch_dir: Path, monkeypatch) -> None:
    # Adaptation of a batch falls back to one photo at a time (out of GPU memory): each photo
    # reports steps 1..N again, which must not count twice.
    import torch

    from cleftscore.gan import adapt as adapt_mod
    from cleftscore.pipeline import GanSettings, PipelineSettings, ProgressHooks, score_photos

    def no_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(adapt_mod, "_adapt_vmap", no_memory)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    seen = {"total": 0, "steps": 0}
    hooks = ProgressHooks(gan_start=lambda n, total: seen.update(total=total),
                          gan_step=lambda n: seen.update(steps=seen["steps"] + n))  # fmt: skip
    settings = PipelineSettings(
        method="gan",
        gan=GanSettings(generator=str(_small_generator_file()), steps=4, adapt_steps=3, loss="mse", batch=2, device="cpu"),
    )
    results = score_photos([batch_dir / "hopper.jpg", batch_dir / "hopper_gray.jpg"], settings,
                           out_dir=tmp_path / "run", cache_dir=tmp_path / "cache", hooks=hooks)  # fmt: skip
    assert [r.status for r in results] == ["ok", "ok"]
    assert seen["total"] == 4 + 3 and seen["steps"] == seen["total"]


def test_asymmetry_refuses_a_face_in_profile(tmp_path: Path, shared_faces: Path) -> None:
    # The largest face of this group photo is turned almost to profile: its mirror image cannot
    # be registered (the "normalized" face came out a flat colour and still got a score). It
    # must fail with a clear reason, while frontal faces in the same batch are scored.
    photos = [shared_faces / "elderly_group_7faces_east_asian.jpg", shared_faces / "glasses_south_asian_male_blue_bg.jpg"]
    results = score_photos(photos, PipelineSettings(method="asymmetry", size=256), out_dir=tmp_path / "run")
    profile, frontal = results
    assert profile.status == "failed" and profile.score is None
    assert "turned too far" in profile.message and "elderly_group_7faces_east_asian.jpg" in profile.message
    assert "\n" not in profile.message
    assert frontal.ok and frontal.landmark_asymmetry_px < 0.1 * 256
