"""The photo-quality gate: each check flags what it is for, and only that; records and study outcomes carry it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cleftscore.benchmarks.robustness import make_variant
from cleftscore.face import prepare_photo
from cleftscore.face.quality import CHECKS, PhotoQuality, QualityLimits, assess_quality, failed_checks
from cleftscore.io import load_image
from cleftscore.run.record import PhotoRecord


@pytest.fixture(scope="module")
def astronaut(example_photo: Path) -> tuple[np.ndarray, tuple[float, float, float, float], np.ndarray]:
    p = prepare_photo(example_photo, size=256)
    b = p.box
    return p.original, (b.left, b.top, b.right, b.bottom), p.aligned.landmarks_original


def _gate(image: np.ndarray, box: tuple[float, float, float, float], lm: np.ndarray) -> PhotoQuality:
    return assess_quality(image, box, lm)


def test_astronaut_passes_and_reports_every_check(astronaut) -> None:
    q = _gate(*astronaut)
    assert [c.name for c in q.checks] == list(CHECKS)
    assert q.ok and q.summary == "ok" and q.failed == ()
    assert 80 < q.value("face_px") < 120  # the face is about 93 px wide in the 512 px photo
    assert abs(q.value("yaw")) < 10 and abs(q.value("roll")) < 10


@pytest.mark.parametrize(
    ("variant", "check"),
    [("grayscale", "colourfulness"), ("exposure_1.4", None), ("noise", None)],
)
def test_a_photo_change_fails_only_its_own_check(astronaut, variant: str, check: str | None) -> None:
    image, box, lm = astronaut
    q = _gate(make_variant(image, variant), box, lm)
    assert q.failed == ((check,) if check else ())


def test_jpeg_raises_blockiness(astronaut) -> None:
    image, box, lm = astronaut
    plain = _gate(image, box, lm).value("blockiness")
    q = _gate(make_variant(image, "jpeg_q30"), box, lm)
    assert plain < 1.1 and q.value("blockiness") > plain + 0.3
    assert assess_quality(
        make_variant(image, "jpeg_q30"), box, lm, limits=QualityLimits(max_blockiness=1.2)
    ).failed == ("blockiness",)


def test_blur_lowers_sharpness(astronaut) -> None:
    image, box, lm = astronaut
    sharp = _gate(image, box, lm).value("sharpness")
    soft = _gate(make_variant(image, "blur"), box, lm).value("sharpness")
    blurred = _gate(cv2.GaussianBlur(image, (0, 0), 2.0), box, lm)
    assert soft < sharp and "sharpness" in blurred.failed


def test_small_face_and_grayscale_photo_fail(local_faces: Path) -> None:
    p = prepare_photo(local_faces / "grayscale_tiny_128px_portrait.jpg", size=256)
    b = p.box
    q = assess_quality(p.original, (b.left, b.top, b.right, b.bottom), p.aligned.landmarks_original)
    assert {"face_px", "colourfulness"} <= set(q.failed)
    assert q.summary == ";".join(q.failed)


def test_failed_checks_from_stored_measures_agree(astronaut) -> None:
    image, box, lm = astronaut
    q = _gate(make_variant(image, "grayscale"), box, lm)
    stored = {f"quality_{c.name}": c.value for c in q.checks}
    assert failed_checks(stored) == q.failed
    assert failed_checks({}) == ()  # records older than the gate pass
    assert failed_checks({"quality_yaw": -35.0}) == ("yaw",)  # head turns are judged by their size


def test_bad_input_is_refused(astronaut) -> None:
    image, box, lm = astronaut
    with pytest.raises(ValueError, match="uint8"):
        assess_quality(image.astype(np.float32), box, lm)
    with pytest.raises(ValueError, match="box"):
        assess_quality(image, (10.0, 10.0, 5.0, 20.0), lm)
    with pytest.raises(ValueError, match="landmarks"):
        assess_quality(image, box, lm[:10])
    with pytest.raises(ValueError, match="max_yaw"):
        QualityLimits(max_yaw=float("nan"))


def test_record_keeps_quality_and_reads_old_records() -> None:
    r = PhotoRecord(file="a.jpg", photo_id="a", status="ok", quality="yaw;blockiness")
    assert PhotoRecord.from_json(r.to_json()).quality == "yaw;blockiness"
    old = r.to_json()
    del old["quality"]
    assert PhotoRecord.from_json(old).quality == ""


def test_grayscale_photo_of_tests_has_no_colour(local_faces: Path) -> None:
    img = load_image(local_faces / "grayscale_tiny_128px_portrait.jpg")
    assert np.ptp(img.astype(int) - img[..., :1].astype(int)) <= 6  # the fixture really is gray
