"""A run's photo scored again on hand-corrected landmarks, through the command line (slow: it scores)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cleftscore.cli import app
from cleftscore.run.corrections import LandmarkEntry, correct_landmarks, landmark_history
from cleftscore.run.folder import read_record

pytestmark = pytest.mark.slow


@pytest.fixture()
def run_folder(tmp_path: Path, example_photo: Path) -> Path:
    from cleftscore import score_photos
    from cleftscore.run.settings import PipelineSettings

    out = tmp_path / "run"
    (res,) = score_photos([example_photo], PipelineSettings(method="asymmetry", size=256), out_dir=out)
    assert res.ok
    return out


def _csv(run: Path) -> list[dict[str, str]]:
    with open(run / "scores.csv", encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_export_edit_apply_redoes_everything_from_the_points(run_folder: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    before = read_record(run_folder, "astronaut")
    heat_before = (run_folder / "photos" / "astronaut" / "heatmap.png").read_bytes()
    exported = tmp_path / "lm.json"
    r = runner.invoke(app, ["landmarks", "export", str(run_folder), "astronaut", "-o", str(exported)])
    assert r.exit_code == 0, r.output
    data = json.loads(exported.read_text())
    points = data["photos"]["astronaut"]["points"]
    assert len(points) == 68
    # Move the patient's right mouth corner (an alignment point) and add an alar crease lower down.
    x, y = points["48"]
    data["photos"]["astronaut"]["points"] = {"48": [x - 4, y + 5], "alar_crease_left": [points["35"][0],
                                                                                      points["35"][1] + 6]}  # fmt: skip
    data["photos"]["astronaut"]["ruler"] = {"start": [0, 0], "end": [100, 0], "mm": 25}
    edited = tmp_path / "lm2.json"
    edited.write_text(json.dumps(data))
    r = runner.invoke(app, ["landmarks", "apply", str(run_folder), str(edited)])
    assert r.exit_code == 0, r.output
    after = read_record(run_folder, "astronaut")
    assert after.ok and after.score != before.score
    assert after.measures["landmarks_corrected_points"].value == 2
    assert any("corrected by hand" in n for n in after.notes)
    assert after.geometry is not None and before.geometry is not None
    assert np.allclose(after.geometry.landmarks_original[48], [x - 4, y + 5])
    assert not np.allclose(after.geometry.to_original, before.geometry.to_original)  # aligned again
    assert after.measures["nl_alar_base_height_asym_icd"].value > before.measures["nl_alar_base_height_asym_icd"].value
    assert after.measures["nl_alar_base_height_asym_mm"].value > 0
    assert (run_folder / "photos" / "astronaut" / "heatmap.png").read_bytes() != heat_before
    (row,) = _csv(run_folder)
    assert float(row["landmarks_corrected_points"]) == 2 and row["nl_alar_base_height_asym_mm"]
    assert float(row["score"]) == pytest.approx(after.score, rel=1e-4)
    (entry,) = landmark_history(run_folder, "astronaut")
    np.testing.assert_allclose(entry["previous_landmarks"], before.geometry.landmarks_original)
    assert entry["previous_score"] == before.score and entry["edit"]["moved"]["48"] == [x - 4, y + 5]
    r = runner.invoke(app, ["landmarks", "history", str(run_folder), "astronaut"])
    assert r.exit_code == 0 and json.loads(r.output)[0]["previous_score"] == before.score


def test_a_correction_that_cannot_be_aligned_keeps_the_old_folder(run_folder: Path) -> None:
    before = read_record(run_folder, "astronaut")
    assert before.geometry is not None
    eye = tuple(before.geometry.landmarks_original[39])
    collapsed = LandmarkEntry("astronaut", "photo", {str(i): eye for i in (*range(36, 48), 48, 54)})
    (res,) = correct_landmarks(run_folder, [collapsed])
    assert not res.ok and "astronaut" in res.message
    kept = read_record(run_folder, "astronaut")
    assert kept.ok and kept.score == before.score and landmark_history(run_folder, "astronaut") == []


def test_an_entry_naming_no_photo_is_one_red_line(run_folder: Path, tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("photo,point,x,y\nnobody.jpg,31,1,2\n", encoding="utf-8")
    r = CliRunner().invoke(app, ["landmarks", "apply", str(run_folder), str(f)])
    assert r.exit_code == 1 and "nobody.jpg" in r.output and "Traceback" not in r.output


def test_a_study_photo_corrected_updates_its_score_and_keeps_the_edit(tmp_path: Path, example_photo: Path) -> None:
    import datetime as dt

    from sqlalchemy import select

    from cleftscore.run.settings import PipelineSettings
    from cleftscore.study.corrections import correct_photo, photo_corrections, prepare_with_edit
    from cleftscore.study.db import open_study
    from cleftscore.study.export import export_tables
    from cleftscore.study.ingest import score_into_visit
    from cleftscore.study.models import Photo, Score
    from cleftscore.study.records import add_patient, add_visit

    study = open_study(tmp_path / "s.sqlite", create=True)
    add_patient(study, "P001")
    visit = add_visit(study, "P001", date=dt.date(2026, 1, 1), phase="pre-op")
    visit_id = visit if isinstance(visit, int) else visit.id
    score_into_visit(study, visit_id, [example_photo], PipelineSettings(method="asymmetry", size=256))
    with study.transaction(write=False) as s:
        photo_id = s.scalar(select(Photo.id))
        before = s.scalar(select(Score)).score
    shown = prepare_with_edit(study, photo_id, size=512)
    x, y = shown.aligned.landmarks[48]
    entry = LandmarkEntry("p", "aligned", {"48": (x - 8, y + 8), "alar_crease_left": (300.0, 330.0)}, source="test")
    (line,) = correct_photo(study, photo_id, entry)
    assert line.status == "updated" and line.previous == before and line.score != before
    with study.transaction(write=False) as s:
        sc = s.scalar(select(Score))
        assert sc.score == line.score and sc.measures["landmarks_corrected_points"]["value"] == 2
        assert "corrected by hand" in sc.notes and "measures.png" in sc.pictures
    (edit,) = photo_corrections(study, photo_id)
    assert edit["source"] == "test" and len(edit["previous"]["landmarks"]) == 68
    assert edit["previous"]["scores"][str(sc.id)]["score"] == before
    # The next edit builds on this one, and the export has a column per measure.
    again = prepare_with_edit(study, photo_id, size=512)
    assert again.edit is not None and set(again.edit.moved) == {48}
    np.testing.assert_allclose(again.aligned.landmarks_original[48], again.edit.moved[48], atol=1e-6)
    export_tables(study, tmp_path / "export")
    header = (tmp_path / "export" / "scores.csv").read_text(encoding="utf-8-sig").splitlines()[0].split(",")
    assert "landmarks_corrected_points" in header and "nl_alar_base_height_asym_icd" in header
    study.close()


def test_the_mirror_registration_follows_a_corrected_point(example_photo: Path) -> None:
    # Jaw point 3 does not take part in the alignment (eyes and mouth corners) but is one of the
    # mirror registration's control points: moving it by hand must change the mirror image only.
    from cleftscore.face.landmarks import LandmarkEdit
    from cleftscore.face.prepare import HandCorrectedFace, prepare_photo
    from cleftscore.normalize.mirror import MirrorNormalizer

    plain = prepare_photo(example_photo, size=256)
    moved = tuple(plain.aligned.landmarks_original[3] + [6.0, -4.0])
    fixed = prepare_photo(example_photo, size=256, edit=LandmarkEdit(moved={3: moved}))
    assert isinstance(fixed.aligned, HandCorrectedFace) and fixed.aligned.corrected == (3,)
    np.testing.assert_array_equal(fixed.aligned.image, plain.aligned.image)  # the same alignment
    a, b = MirrorNormalizer().normalize([plain.aligned, fixed.aligned])
    assert a.ok and b.ok
    assert np.abs(a.image.astype(int) - b.image.astype(int)).max() > 0


def test_aligned_frame_points_go_back_to_where_they_were_in_the_photo(run_folder: Path, tmp_path: Path) -> None:
    before = read_record(run_folder, "astronaut")
    assert before.geometry is not None
    out = tmp_path / "aligned.json"
    r = CliRunner().invoke(
        app, ["landmarks", "export", str(run_folder), "astronaut", "-o", str(out), "--frame", "aligned"]
    )
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    entry = data["photos"]["astronaut"]
    assert entry["frame"] == "aligned"
    entry["points"] = {"57": entry["points"]["57"]}  # a lip point, given back unchanged in aligned pixels
    out.write_text(json.dumps(data))
    assert CliRunner().invoke(app, ["landmarks", "apply", str(run_folder), str(out)]).exit_code == 0
    after = read_record(run_folder, "astronaut")
    assert after.geometry is not None
    np.testing.assert_allclose(after.geometry.landmarks_original, before.geometry.landmarks_original, atol=0.02)


def test_all_68_points_by_hand_serve_a_photo_without_a_detected_face() -> None:
    from cleftscore.errors import FaceNotFoundError
    from cleftscore.face.landmarks import LandmarkEdit
    from cleftscore.face.prepare import HandCorrectedFace, prepare_photo
    from landmark_helpers import ASTRONAUT_68 as _ASTRONAUT

    blank = np.full((512, 512, 3), 128, np.uint8)
    with pytest.raises(FaceNotFoundError, match="no face found"):
        prepare_photo(blank, size=64)
    edit = LandmarkEdit(moved={i: (float(x) * 2, float(y) * 2) for i, (x, y) in enumerate(_ASTRONAUT)})
    prepared = prepare_photo(blank, size=64, edit=edit)
    assert isinstance(prepared.aligned, HandCorrectedFace) and len(prepared.aligned.corrected) == 68
    np.testing.assert_allclose(prepared.aligned.landmarks_original, _ASTRONAUT * 2, atol=1e-9)
    assert any("placed by hand" in n for n in prepared.notes)
    with pytest.raises(FaceNotFoundError, match="no face found"):  # some points by hand are not enough
        prepare_photo(blank, size=64, edit=LandmarkEdit(moved={48: (10.0, 10.0)}))


def test_the_score_uses_hand_corrected_points_as_given(example_photo: Path) -> None:
    # By default the score places the landmarks again from the image (a flip-fair placement); a
    # hand correction must reach the score instead of being placed over.
    from cleftscore.face.prepare import prepare_photo
    from cleftscore.normalize.mirror import MirrorNormalizer
    from cleftscore.score.paper import ScoreSettings, score_face_referenced

    face = prepare_photo(example_photo, size=256).aligned
    (norm,) = MirrorNormalizer().normalize([face])
    moved = face.landmarks.copy()
    moved[31:36, 1] += 10.0  # the nostril base dragged 10 px down: the scored lip skin moves
    settings = ScoreSettings()
    placed, _ = score_face_referenced(face.image, norm.image, moved, settings=settings)
    given, _ = score_face_referenced(face.image, norm.image, moved, settings=settings, hand_corrected=True)
    assert not np.array_equal(placed.heatmap, given.heatmap)
    # Without the flag the moved points were placed over: the map is the uncorrected face's.
    unmoved, _ = score_face_referenced(face.image, norm.image, face.landmarks, settings=settings)
    assert np.array_equal(placed.heatmap, unmoved.heatmap)
