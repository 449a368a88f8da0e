"""Tests of the run-folder format: the record, its reader and writer, the lock, the CSV."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cleftscore.normalize import Measure
from cleftscore.run.folder import (
    RunFolderBusyError,
    RunLock,
    csv_columns,
    csv_row,
    list_photo_ids,
    read_record,
    settings_differences,
    write_photo,
)
from cleftscore.run.record import RECORD_VERSION, FaceGeometry, PhotoRecord


def _geometry(size: int = 64) -> FaceGeometry:
    lm = np.random.default_rng(0).uniform(0, size, (68, 2))
    return FaceGeometry(size=size, faces_found=1, face_box=(1.0, 2.0, 30.0, 40.0), detector_score=0.9,
                        landmarks_aligned=lm, landmarks_original=lm * 2, to_original=np.diag([2.0, 2.0, 1.0]),
                        original_shape=(128, 128))  # fmt: skip


def _record(**kw) -> PhotoRecord:
    base = {"file": "/photos/a.jpg", "photo_id": "a", "status": "ok", "method": "asymmetry", "score": -1.5,
                "settings": {"method": "asymmetry", "score": {"roi": "mouth"}}, "geometry": _geometry(),
                "measures": {"landmark_asymmetry_px": Measure(1.25, "RMS residual")}, "pictures": ("aligned.png",)}  # fmt: skip
    base.update(kw)
    return PhotoRecord(**base)


def test_record_round_trips_through_result_json(tmp_path: Path) -> None:
    rec = _record(notes=("2 faces found",), calibration={"calibrated_rating": 3.0})
    img = np.zeros((64, 64, 3), np.uint8)
    folder = write_photo(tmp_path, rec, {"aligned.png": img})
    data = json.loads((folder / "result.json").read_text())
    assert data["record_version"] == RECORD_VERSION
    back = read_record(tmp_path, "a")
    assert not back.damaged and back.to_json() == rec.to_json()
    assert back.measures["landmark_asymmetry_px"].value == 1.25
    np.testing.assert_array_equal(back.geometry.landmarks_aligned, rec.geometry.landmarks_aligned)


def test_records_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="status"):
        _record(status="done")
    with pytest.raises(ValueError, match="needs a message"):
        _record(status="failed", score=None, pictures=())
    with pytest.raises(ValueError, match="no pictures"):
        _record(status="failed", message="a.jpg: no face", score=None)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        FaceGeometry(size=64, faces_found=1, face_box=(0, 0, 1, 1), detector_score=1.0, landmarks_aligned=np.zeros((5, 2)),
                     landmarks_original=np.zeros((68, 2)), to_original=np.eye(3), original_shape=(9, 9))  # fmt: skip


def test_version_1_records_are_read(tmp_path: Path) -> None:
    d = tmp_path / "photos" / "old"
    d.mkdir(parents=True)
    lm = _geometry().landmarks_aligned.tolist()
    (d / "result.json").write_text(json.dumps({
        "file": "old.jpg", "photo_id": "old", "status": "ok", "method": "asymmetry", "score": -2.0,
        "settings": {"method": "asymmetry"}, "size": 64, "faces_found": 1, "face_box": [0, 0, 5, 5],
        "detector_score": 1.0, "landmarks_aligned": lm, "landmarks_original": lm, "to_original": np.eye(3).tolist(),
        "original_shape": [64, 64], "landmark_asymmetry_px": 0.5, "cleftscore_version": "0.1.0",
    }))  # fmt: skip
    rec = read_record(tmp_path, "old")
    assert rec.ok and not rec.damaged and rec.score == -2.0
    assert rec.measures["landmark_asymmetry_px"].value == 0.5
    assert rec.environment["cleftscore_version"] == "0.1.0" and rec.geometry.size == 64


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"file": "x"}', '{"record_version": 99}'])
def test_unreadable_records_become_failed_stand_ins(tmp_path: Path, content: str) -> None:
    d = tmp_path / "photos" / "x"
    d.mkdir(parents=True)
    (d / "result.json").write_text(content)
    rec = read_record(tmp_path, "x")
    assert rec.damaged and rec.status == "failed" and str(d / "result.json") in rec.message
    assert "\n" not in rec.message


def test_a_new_folder_replaces_the_old_one_whole(tmp_path: Path) -> None:
    img = np.full((64, 64, 3), 7, np.uint8)
    write_photo(tmp_path, _record(pictures=("aligned.png", "panel.png")), {"aligned.png": img, "panel.png": img})
    failed = PhotoRecord(file="/photos/other.jpg", photo_id="a", status="failed", message="/photos/other.jpg: no face")
    write_photo(tmp_path, failed, {})
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["a"]  # no staging left
    assert [p.name for p in (tmp_path / "photos" / "a").iterdir()] == ["result.json"]
    with pytest.raises(ValueError, match="lists pictures"):
        write_photo(tmp_path, _record(), {})


def test_interrupted_replacement_is_undone_under_the_lock(tmp_path: Path) -> None:
    # What a crash between the two renames of the portable path leaves: the old folder aside.
    photos = tmp_path / "photos"
    (photos / ".old-a-123").mkdir(parents=True)
    (photos / ".old-a-123" / "result.json").write_text("{}")
    (photos / ".new-b-123").mkdir()
    assert list_photo_ids(tmp_path) == []
    with RunLock(tmp_path):
        pass
    assert sorted(p.name for p in photos.iterdir()) == ["a"]


def test_the_lock_refuses_a_second_process_and_not_its_own(tmp_path: Path) -> None:
    code = (
        "import sys; from cleftscore.run.folder import RunLock, RunFolderBusyError\n"
        "try:\n    RunLock(sys.argv[1]).__enter__()\nexcept RunFolderBusyError as e:\n    print(e); sys.exit(3)\n"
    )
    with RunLock(tmp_path):
        with RunLock(tmp_path):  # nested in the holder: allowed
            pass
        other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
        assert other.returncode == 3 and f"process {os.getpid()}" in other.stdout
    # Released: another process takes it.
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path)]).returncode == 0
    assert issubclass(RunFolderBusyError, Exception)


def test_a_new_measure_gets_its_own_csv_column() -> None:
    a = _record()
    b = _record(photo_id="b", measures={"cleft_width_px": Measure(3.5, "width of the gap", stage="score")})
    cols = csv_columns([a, b])
    assert cols.index("landmark_asymmetry_px") < cols.index("cleft_width_px") < cols.index("roi")
    assert csv_row(b)["cleft_width_px"] == "3.500" and "cleft_width_px" not in csv_row(a)


def test_the_reading_among_normal_faces_and_the_quality_gate_lead_the_csv() -> None:
    placed = {"reference_percentile": Measure(98.0, "percentile", stage="score"),
              "reference_z": Measure(2.4, "z", stage="score")}  # fmt: skip
    a = _record(measures={**placed, "landmark_asymmetry_px": Measure(1.0, "RMS")}, quality="ok")
    b = _record(photo_id="b", quality="sharpness;yaw")
    c = _record(photo_id="c", status="failed", message="c.jpg: no face found", score=None, pictures=(), measures={})
    cols = csv_columns([a, b, c])
    assert cols[:8] == ["file", "photo_id", "status", "reading", "reference_percentile", "reference_z", "score",
                        "quality"]  # fmt: skip
    assert cols.count("reference_percentile") == 1
    rows = [csv_row(r) for r in (a, b, c)]
    assert rows[0]["reading"] == "outside the normal range" and rows[0]["reference_percentile"] == "98.000"
    assert rows[0]["quality"] == "ok" and rows[1]["quality"] == "sharpness;yaw"
    assert rows[1]["reading"] == "" and rows[2]["reading"] == ""  # no reference placement, or failed
    assert csv_row(a, stale=["score.roi=mouth (not nose)"])["reading"] == ""  # a stale score has no reading


def test_settings_differences_only_compare_what_the_run_names() -> None:
    rec = {
        "method": "asymmetry",
        "seed": 0,
        "score": {"roi": "mouth", "difference": {"erosion": 3}},
        "gan": {"steps": 10},
    }
    assert settings_differences(rec, {"score": {"roi": "mouth", "difference": {"erosion": 3}}}) == []
    # Another normal reference places the score elsewhere but does not change it: not stale.
    assert settings_differences({**rec, "reference": "a.json"}, {**rec, "reference": "b.json"}) == []
    assert settings_differences(rec, {"score": {"roi": "face", "difference": {"erosion": 3}}}) == [
        "score.roi=mouth (not face)"
    ]
    # GAN settings do not matter between two asymmetry runs; batch size never does.
    assert settings_differences(rec, {**rec, "gan": {"steps": 20}}) == []
    gan = {**rec, "method": "gan", "gan": {"steps": 10, "batch": 4}}
    assert settings_differences(gan, {**gan, "gan": {"steps": 10, "batch": 8}}) == []


# --- a rescore killed at random points ---------------------------------------------------------


@pytest.mark.slow
def test_rescore_killed_at_random_points_loses_nothing(tmp_path: Path, local_faces: Path, example_photo: Path) -> None:
    from cleftscore.run.pipeline import score_photos
    from cleftscore.run.settings import PipelineSettings

    photos = tmp_path / "in"
    photos.mkdir()
    for i, src in enumerate([local_faces / "tiny_128px_portrait_uniform.jpg", local_faces / "grayscale_tiny_128px_portrait.jpg",
                             local_faces / "exif_orientation6_tiny_portrait.jpg", example_photo] * 2):  # fmt: skip
        shutil.copy(src, photos / f"p{i}{src.suffix}")
    out = tmp_path / "run"
    results = score_photos([photos], PipelineSettings(method="asymmetry", size=256), out_dir=out)
    assert all(r.ok for r in results)
    ids = list_photo_ids(out)
    before = {
        pid: {n: (out / "photos" / pid / n).read_bytes() for n in ("aligned.png", "normalized.png")} for pid in ids
    }

    def rescore(erosion: int) -> subprocess.Popen:
        code = (
            "import sys; from cleftscore.run.rescore import rescore_run; from cleftscore.score.paper import ScoreSettings\n"
            "from cleftscore.heatmap import DifferenceSettings\n"
            f"rescore_run(sys.argv[1], ScoreSettings(difference=DifferenceSettings(erosion={erosion})))\n"
        )
        return subprocess.Popen([sys.executable, "-c", code, str(out)])

    t0 = time.perf_counter()
    assert rescore(0).wait(timeout=300) == 0
    full = time.perf_counter() - t0
    rng = random.Random(20261201)
    for i in range(6):
        proc = rescore(3 if i % 2 == 0 else 0)
        time.sleep(rng.uniform(0.0, full))  # where it dies does not matter; that it dies part-way, often does
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert list_photo_ids(out) == ids
        for pid in ids:
            rec = read_record(out, pid)
            assert rec.ok and not rec.damaged, rec.message
            for name, data in before[pid].items():
                assert (out / "photos" / pid / name).read_bytes() == data, (i, pid, name)
            assert set(rec.pictures) <= {p.name for p in (out / "photos" / pid).iterdir()}
    assert rescore(3).wait(timeout=300) == 0  # and a rescore after the kills finishes the job
    assert all(read_record(out, pid).settings["score"]["difference"]["erosion"] == 3 for pid in ids)
    assert not [p for p in (out / "photos").iterdir() if p.name.startswith(".")]


def test_a_folder_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    from cleftscore.errors import CleftscoreError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CleftscoreError, match="cannot write into this folder"):
        with RunLock(blocker / "run"):
            pass
