"""Landmark files (JSON and CSV) and how an entry becomes an edit of the photo's points."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cleftscore.errors import CleftscoreError
from cleftscore.face.landmarks import LandmarkEdit
from cleftscore.run.corrections import LandmarkEntry, read_landmark_file, resolve_edit
from cleftscore.run.record import FaceGeometry, PhotoRecord


def _record(to_original: np.ndarray | None = None) -> PhotoRecord:
    lm = np.arange(136, dtype=np.float64).reshape(68, 2)
    m = np.eye(3) if to_original is None else to_original
    geo = FaceGeometry(size=256, faces_found=1, face_box=(0, 0, 10, 10), detector_score=1.0, landmarks_aligned=lm,
                       landmarks_original=lm, to_original=m, original_shape=(300, 300))  # fmt: skip
    return PhotoRecord(file="a.jpg", photo_id="a", status="ok", geometry=geo)


def test_json_and_csv_files_give_the_same_entry(tmp_path: Path) -> None:
    j = tmp_path / "lm.json"
    j.write_text(json.dumps({"photos": {"a.jpg": {"points": {"31": [1, 2], "alar_crease_left": [3, 4]},
                                                  "ruler": {"start": [0, 0], "end": [10, 0], "mm": 5}}}}))  # fmt: skip
    c = tmp_path / "lm.csv"
    c.write_text("photo,point,x,y,mm\na.jpg,31,1,2,\na.jpg,alar_crease_left,3,4,\n"
                 "a.jpg,ruler_start,0,0,5\na.jpg,ruler_end,10,0,\n", encoding="utf-8")  # fmt: skip
    (ej,), (ec,) = read_landmark_file(j), read_landmark_file(c)
    assert ej.points == ec.points and ej.ruler_mm == ec.ruler_mm == 5.0 and ej.frame == ec.frame == "photo"
    edit = resolve_edit(ej, _record(), when="2026-12-07T20:00:00+00:00")
    assert edit.moved == {31: (1.0, 2.0)} and edit.added == {"alar_crease_left": (3.0, 4.0)}
    assert edit.scale().mm_per_pixel == pytest.approx(0.5)  # type: ignore[union-attr]
    assert edit.when == "2026-12-07T20:00:00+00:00" and edit.source == "lm.json"


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("x.json", "[]", "photos"),
        ("x.json", '{"photos": {"a": {"points": {"nose": [1, 2]}}}}', "unknown point 'nose'"),
        ("x.json", '{"photos": {"a": {"points": {"3": [1]}}}}', "two numbers"),
        ("x.json", '{"photos": {"a": {"frame": "screen", "points": {}}}}', "frame must be one of"),
        ("x.csv", "photo,x,y\na,1,2\n", "columns photo, point, x, y"),
        ("x.csv", "photo,point,x,y\na,ruler_start,1,2\na,ruler_end,5,5\n", "ruler needs"),
        ("x.csv", "photo,point,x,y\na,iris_a,1,2\n", "both edges"),
        ("x.json", '{"photos": {}}', "names no photo"),
        ("x.json", "{not json", "not a valid landmark file"),
    ],
)
def test_bad_landmark_files_give_one_line_naming_the_file(tmp_path: Path, name: str, text: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CleftscoreError, match=match) as info:
        read_landmark_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_aligned_points_are_mapped_to_the_photo_and_edits_accumulate() -> None:
    to_original = np.array([[2.0, 0, 10], [0, 2.0, 20], [0, 0, 1]])
    rec = _record(to_original)
    previous = LandmarkEdit(moved={48: (5.0, 5.0), 31: (0.0, 0.0)}, added={"columella_base": (1.0, 1.0)})
    entry = LandmarkEntry("a", "aligned", {"cheilion_left": (3.0, 4.0), "31": (1.0, 1.0)})
    edit = resolve_edit(entry, rec, previous=previous)
    assert edit.moved == {48: (5.0, 5.0), 54: (16.0, 28.0), 31: (12.0, 22.0)}  # 54 = cheilion_left
    assert edit.added == {"columella_base": (1.0, 1.0)}
    bare = PhotoRecord(file="b.jpg", photo_id="b", status="ok")
    with pytest.raises(CleftscoreError, match="photo's pixels"):
        resolve_edit(entry, bare)
