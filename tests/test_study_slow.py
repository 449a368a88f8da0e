"""A test study end to end: 3 patients x 2-3 visits x 2-3 photos, scored with the asymmetry method.

Public sample faces stand in for patients (never real patient photos). Each patient's pre-op
photos carry a planted dark stripe from the nostril through both lips (a crude cleft), so
that removing it after "surgery" must raise the score; every photo is a slightly different
exposure, so no two files share a hash.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance
from typer.testing import CliRunner

from cleftscore.cli import app

# The whole file runs in .ci/run's slow pass: the README's pytest stays under 150 s on 2 cores.
pytestmark = pytest.mark.slow

runner = CliRunner()
SIZE = "128"  # aligned face side: small, so the CPU scores a photo in well under a second
ASYM = ["--method", "asymmetry", "--size", SIZE]


@dataclass(frozen=True)
class PlannedVisit:
    date: str
    phase: str
    photos: int
    cleft: bool
    procedure: str | None = None
    note: str | None = None


#: Patient code -> (sample photo, visits).
PLAN: dict[str, tuple[str, tuple[PlannedVisit, ...]]] = {
    "P001": ("tiny_128px_portrait_uniform.jpg", (
        PlannedVisit("2026-01-10", "pre-op", 3, True),
        PlannedVisit("2026-04-12", "post-op", 2, False, "Millard rotation-advancement"),
        PlannedVisit("2026-10-01", "follow-up", 2, False),
    )),
    "P002": ("two_faces_laughing_glasses_headtilt.jpg", (
        PlannedVisit("2026-02-01", "pre-op", 2, True),
        PlannedVisit("2026-06-01", "post-op", 3, False, "=HYPERLINK(\"http://x\")", "+ revision planned"),
    )),
    "P003": ("astronaut", (
        PlannedVisit("2026-03-01", "pre-op", 2, True),
        PlannedVisit("2026-07-01", "post-op", 2, False),
    )),
}  # fmt: skip


def _sample(name: str, local_faces: Path) -> Image.Image:
    if name == "astronaut":
        path = Path(str(resources.files("cleftscore") / "data" / "astronaut.png"))
        return Image.open(path).convert("RGB").resize((256, 256), Image.Resampling.LANCZOS)
    return Image.open(local_faces / name).convert("RGB")


def _plant_cleft(im: Image.Image) -> Image.Image:
    """A dark stripe from the left nostril down through both lips, placed by the landmarks."""
    from cleftscore.face.prepare import prepare_photo

    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"cleftscore-plant-{os.getpid()}.png"
    im.save(tmp)
    try:
        lm = prepare_photo(tmp, size=128, detector="hog").aligned.landmarks_original
    finally:
        tmp.unlink(missing_ok=True)
    out = im.copy()
    width = max(2, int(np.linalg.norm(lm[54] - lm[48]) / 6))
    ImageDraw.Draw(out).line([tuple(lm[31]), tuple(lm[58])], fill=(60, 20, 20), width=width)
    return out


def _variant(im: Image.Image, k: int) -> Image.Image:
    return ImageEnhance.Brightness(im).enhance(0.92 + 0.03 * k)


@pytest.fixture(scope="module")
def photo_sets(tmp_path_factory: pytest.TempPathFactory, local_faces: Path) -> dict[tuple[str, int], list[Path]]:
    """(code, visit index) -> that visit's photo files."""
    root = tmp_path_factory.mktemp("study-photos")
    sets: dict[tuple[str, int], list[Path]] = {}
    for n, (code, (sample, visits)) in enumerate(PLAN.items()):
        clean = _sample(sample, local_faces)
        cleft = _plant_cleft(clean)
        for i, v in enumerate(visits):
            folder = root / code / f"visit{i}"
            folder.mkdir(parents=True)
            sets[code, i] = []
            for k in range(v.photos):
                path = folder / f"{code.lower()}_{v.phase}_{k}.jpg"
                _variant(cleft if v.cleft else clean, 4 * i + k + n).save(path, quality=93)
                sets[code, i].append(path)
    return sets


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory, photo_sets: dict[tuple[str, int], list[Path]]) -> Path:
    """The test study, built with the command line exactly as a user would."""
    db = tmp_path_factory.mktemp("study") / "study.sqlite"
    d = ["--db", str(db)]
    _ok(["study", "init", *d])
    visit_id = 0
    for code, (_, visits) in PLAN.items():
        _ok(["study", "add-patient", code, "--birth-year", "2025", "--side", "left", *d])
        for i, v in enumerate(visits):
            extra = [*(["--procedure", v.procedure] if v.procedure else []), *(["--note", v.note] if v.note else [])]
            out = _ok(["study", "add-visit", code, "--date", v.date, "--phase", v.phase, *extra, *d])
            visit_id += 1
            assert f"Added visit {visit_id} " in out
            out = _ok(["study", "score", str(visit_id), str(photo_sets[code, i][0].parent), *ASYM, *d])
            assert f"Scored {v.photos} photo(s); 0 already" in out
    return db


@pytest.fixture()
def study_copy(study_db: Path, tmp_path: Path) -> Path:
    """A private copy of the test study, for tests that change it."""
    dst = tmp_path / "study.sqlite"
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(study_db) + suffix)
        if src.exists():
            shutil.copy2(src, str(dst) + suffix)
    shutil.copytree(str(study_db) + ".files", str(dst) + ".files")
    return dst


def _query(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _counts(db: Path) -> tuple[int, ...]:
    return tuple(_query(db, f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("patients", "visits", "photos", "scores"))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def _check_consistent(db: Path) -> None:
    """Every row's files exist with the hashes the rows say; every photo has its score."""
    from cleftscore.paths import sha256_file

    assert _query(db, "PRAGMA integrity_check") == [("ok",)]
    assert _query(db, "PRAGMA foreign_key_check") == []
    files = Path(str(db) + ".files")
    for stored, stored_sha in _query(db, "SELECT stored_path, stored_sha256 FROM photos"):
        assert sha256_file(files / stored) == stored_sha
    assert _query(db, "SELECT COUNT(*) FROM photos WHERE id NOT IN (SELECT photo_id FROM scores)") == [(0,)]
    import json

    for (pictures,) in _query(db, "SELECT pictures_json FROM scores"):
        for rel in json.loads(pictures).values():
            assert (files / rel).is_file()


def _follow_up_visit(db: Path) -> list[str]:
    """Add visit 8 (a follow-up of P001) to a copy of the test study; return the --db option."""
    d = ["--db", str(db)]
    _ok(["study", "add-visit", "P001", "--date", "2026-11-15", "--phase", "follow-up", *d])
    return d


def _cli_process(args: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "from cleftscore.cli import main; main()", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _photo_folder(folder: Path, local_faces: Path, n: int, first: int) -> Path:
    folder.mkdir()
    base = Image.open(local_faces / "tiny_128px_portrait_uniform.jpg").convert("RGB")
    for k in range(n):
        _variant(base, first + k).save(folder / f"f{k:02d}.jpg", quality=93)
    return folder


# ----------------------------------------------------------------------------- the study


def test_study_holds_every_patient_visit_photo_and_score(study_db: Path) -> None:
    n_photos = sum(v.photos for _, visits in PLAN.values() for v in visits)
    assert _counts(study_db) == (3, 7, n_photos, n_photos)
    assert _query(study_db, "SELECT DISTINCT method FROM scores") == [("asymmetry",)]
    _check_consistent(study_db)
    # Every setting is recorded with the score, and the normalizer's measure too.
    import json

    settings, measures = _query(study_db, "SELECT settings_json, measures_json FROM scores LIMIT 1")[0]
    assert json.loads(settings)["size"] == int(SIZE) and json.loads(settings)["score"]["roi"] == "mouth"
    assert "landmark_asymmetry_px" in json.loads(measures)


def test_outcomes_per_patient_and_cohort_with_both_plots(study_db: Path, tmp_path: Path) -> None:
    # The test photos are small (128 px faces) or turned: the photo-quality gate leaves them out of the change
    # by default and says so; the arithmetic below is checked on all of them.
    gated = runner.invoke(
        app, ["study", "outcomes", "--db", str(study_db), "--out", str(tmp_path / "gated"), "--n-boot", "200"]
    )
    assert gated.exit_code == 0, gated.output
    assert "left out of the change" in " ".join(gated.output.split())
    out = tmp_path / "outcomes"
    result = runner.invoke(app, ["study", "outcomes", "--db", str(study_db), "--out", str(out), "--n-boot", "2000",
                                 "--include-failed-quality"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = _read_csv(out / "outcomes.csv")
    changes, cohort = rows[:-1], rows[-1]
    assert [(r["patient"], r["phase"]) for r in changes] == [
        ("P001", "post-op"),
        ("P001", "follow-up"),
        ("P002", "post-op"),
        ("P003", "post-op"),
    ]
    scores = {
        (c, d): []
        for c, d in _query(
            study_db, "SELECT DISTINCT p.code, v.date FROM patients p JOIN visits v ON v.patient_id = p.id"
        )
    }
    for code, date, s in _query(study_db, "SELECT p.code, v.date, s.score FROM scores s JOIN photos ph ON s.photo_id = ph.id "
                                          "JOIN visits v ON ph.visit_id = v.id JOIN patients p ON v.patient_id = p.id"):  # fmt: skip
        scores[code, date].append(s)
    baseline = {code: PLAN[code][1][0].date for code in PLAN}
    for r in changes:
        expected = np.mean(scores[r["patient"], r["date"]]) - np.mean(scores[r["patient"], baseline[r["patient"]]])
        assert float(r["change"]) == pytest.approx(expected, abs=1e-9)
        assert float(r["ci95_low"]) <= float(r["change"]) <= float(r["ci95_high"]) and r["note"] == ""
        # The change also in units of the normal reference's spread, with the reference named.
        assert float(r["change_normal_units"]) * float(r["change"]) > 0 and "normal photos" in r["reference"]
    # The planted clefts were removed after surgery: every patient's score rose.
    assert all(float(r["change"]) > 0 for r in changes)
    assert cohort["patient"].startswith("cohort (n=3") and float(cohort["change"]) > 0
    assert float(cohort["ci95_low"]) < float(cohort["change"]) < float(cohort["ci95_high"])
    assert 0 < float(cohort["p_value"]) <= 1 and 0 < float(cohort["wilcoxon_p"]) <= 1
    assert "paired t-test p =" in result.output
    for name in ("timeline_P001.png", "timeline_P002.png", "timeline_P003.png", "cohort.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 300
            # Not a blank canvas: the heat-map thumbnails and lines put colour in it.
            assert np.asarray(im.convert("L")).std() > 10


def test_cohort_can_compare_the_first_later_visit(study_db: Path) -> None:
    from cleftscore.study.db import open_study
    from cleftscore.study.outcomes import compute_outcomes

    with open_study(study_db, create=False) as study:
        last = compute_outcomes(study, n_boot=500, include_failed_quality=True)  # small test photos (see above)
        first = compute_outcomes(study, after="first", n_boot=500, include_failed_quality=True)
        assert compute_outcomes(study, n_boot=500, seed=0, include_failed_quality=True) == last  # seeded CIs
    p1 = {c.phase: c for c in last.changes if c.code == "P001"}
    assert last.cohort.later[0] == pytest.approx(p1["follow-up"].after)
    assert first.cohort.later[0] == pytest.approx(p1["post-op"].after)
    assert last.cohort.later[1:] == first.cohort.later[1:]  # one later visit each
    assert last.method == "asymmetry" and last.notes == ()


def test_bootstrap_ci_is_seeded_and_needs_two_photos() -> None:
    from cleftscore.study.outcomes import bootstrap_change_ci

    before, after = np.array([1.0, 1.2, 0.9]), np.array([1.6, 1.5])
    ci = bootstrap_change_ci(before, after, seed=3)
    assert ci == bootstrap_change_ci(before, after, seed=3)
    assert ci is not None and ci[0] <= after.mean() - before.mean() <= ci[1]
    # Resampled means can only lie between the extreme photo scores.
    assert ci[0] >= after.min() - before.max() and ci[1] <= after.max() - before.min()
    assert bootstrap_change_ci(before, np.array([1.5])) is None
    assert bootstrap_change_ci(np.array([1.0, 1.0]), np.array([2.0, 2.0])) == (1.0, 1.0)


def test_show_lists_visits_photos_and_scores(study_db: Path) -> None:
    result = runner.invoke(app, ["study", "show", "P001", "--db", str(study_db)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "patient P001, born 2025, left: 3 visit(s)" in result.output
    assert result.output.count("asymmetry") == 7 and "Millard rotation-advancement" in result.output
    listed = runner.invoke(app, ["study", "patients", "--db", str(study_db)], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and all(code in listed.output for code in PLAN)


def test_export_writes_every_table_with_formula_escaping(study_db: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["study", "export", str(tmp_path / "csv"), "--db", str(study_db)])
    assert result.exit_code == 0, result.output
    tables = {name: _read_csv(tmp_path / "csv" / f"{name}.csv") for name in ("patients", "visits", "photos", "scores")}
    assert tuple(len(t) for t in tables.values()) == _counts(study_db)
    visit = next(v for v in tables["visits"] if v["patient"] == "P002" and v["phase"] == "post-op")
    assert visit["procedure"] == '\'=HYPERLINK("http://x")' and visit["note"] == "'+ revision planned"
    assert all(
        float(s["score"]) == pytest.approx(float(s["score"])) and s["method"] == "asymmetry" for s in tables["scores"]
    )
    assert {p["patient"] for p in tables["photos"]} == set(PLAN)


# ----------------------------------------------------------------------------- bad input, re-runs


def test_the_same_photos_again_are_found_by_hash(study_copy: Path, photo_sets: dict) -> None:
    before = _counts(study_copy)
    result = runner.invoke(
        app, ["study", "score", "1", str(photo_sets["P001", 0][0].parent), *ASYM, "--db", str(study_copy)]
    )
    assert result.exit_code == 0 and "Scored 0 photo(s); 3 already" in result.output
    # The same photo under another name is the same photo.
    renamed = study_copy.parent / "renamed.jpg"
    shutil.copy(photo_sets["P001", 0][0], renamed)
    again = runner.invoke(app, ["study", "score", "1", str(renamed), *ASYM, "--db", str(study_copy)])
    assert again.exit_code == 0 and "1 already" in again.output
    assert _counts(study_copy) == before


def test_a_photo_belongs_to_one_visit(study_copy: Path, photo_sets: dict) -> None:
    before = _counts(study_copy)
    pre_op_photo = photo_sets["P001", 0][0]
    result = runner.invoke(app, ["study", "score", "2", str(pre_op_photo), *ASYM, "--db", str(study_copy)])
    assert result.exit_code == 1
    assert f"failed: {pre_op_photo.name}" in result.output and "visit 1 (2026-01-10 pre-op)" in result.output
    assert _counts(study_copy) == before


def test_failing_photos_are_one_line_each_and_the_batch_goes_on(
    study_copy: Path, photo_sets: dict, tmp_path: Path
) -> None:
    d = ["--db", str(study_copy)]
    _ok(["study", "add-visit", "P003", "--date", "2026-11-01", "--phase", "follow-up", *d])
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.fromarray(np.full((200, 200, 3), 120, np.uint8)).save(folder / "wall.png")
    _variant(_sample("astronaut", Path()), 9).save(folder / "good.jpg", quality=93)
    before = _counts(study_copy)
    result = runner.invoke(app, ["study", "score", "8", str(folder), *ASYM, *d])
    assert result.exit_code == 1
    failed = [line for line in result.output.splitlines() if line.startswith("failed:")]
    assert len(failed) == 2 and any("broken.jpg" in f for f in failed) and any("wall.png" in f for f in failed)
    assert "Traceback" not in result.output and "good.jpg: score = " in result.output
    assert _counts(study_copy) == (before[0], before[1], before[2] + 1, before[3] + 1)
    _check_consistent(study_copy)


@pytest.mark.slow
def test_gan_method_records_each_photo_from_the_writer_thread(
    study_copy: Path, photo_sets: dict, tiny_generator_file: Path
) -> None:
    """The GAN pipeline finishes photos on a worker thread; each is recorded from there."""
    before = _counts(study_copy)
    gan = ["--method", "gan", "--generator", str(tiny_generator_file), "--loss", "mse", "--device", "cpu",
           "--steps", "2", "--adapt-steps", "1", "--batch", "2"]  # fmt: skip
    folder = str(photo_sets["P002", 1][0].parent)
    result = runner.invoke(app, ["study", "score", "5", folder, *gan, "--db", str(study_copy)])
    assert result.exit_code == 0, result.output
    assert "Scored 3 photo(s); 0 already" in result.output  # the same photos, new settings: new scores
    assert _counts(study_copy) == (*before[:3], before[3] + 3)
    methods = _query(
        study_copy,
        "SELECT method, COUNT(*) FROM scores s JOIN photos p ON s.photo_id = p.id WHERE p.visit_id = 5 GROUP BY method",
    )
    assert sorted(methods) == [("asymmetry", 3), ("gan", 3)]
    import json

    (normalization,) = _query(study_copy, "SELECT normalization_json FROM scores WHERE method = 'gan' LIMIT 1")[0]
    assert json.loads(normalization)  # the normalizer's record of how the steps ran
    _check_consistent(study_copy)
    again = runner.invoke(app, ["study", "score", "5", folder, *gan, "--batch", "1", "--db", str(study_copy)])
    assert "Scored 0 photo(s); 3 already" in again.output  # batch changes speed, not the score
    with_several = runner.invoke(
        app, ["study", "outcomes", "--db", str(study_copy), "--out", str(study_copy.parent / "o")]
    )
    assert with_several.exit_code == 1 and "choose one with --method" in with_several.output


def test_a_full_disk_while_storing_leaves_no_row_behind(
    study_copy: Path, tmp_path: Path, local_faces: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from cleftscore.run.pipeline import score_photos
    from cleftscore.run.settings import PipelineSettings
    from cleftscore.study import ingest
    from cleftscore.study.db import open_study

    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(2):
        _variant(_sample("tiny_128px_portrait_uniform.jpg", local_faces), 40 + k).save(folder / f"g{k}.jpg", quality=93)
    run = tmp_path / "run"
    score_photos(sorted(folder.iterdir()), PipelineSettings(method="asymmetry", size=int(SIZE)), out_dir=run)
    real = ingest.store_bytes
    calls = {"n": 0}
    from cleftscore.run.folder import read_record

    first = len(read_record(run, "g0").pictures)  # pictures stored for the first photo

    def store_bytes(root: Path, data: bytes, *, suffix: str, folder: str = "pictures") -> str:
        calls["n"] += 1
        if calls["n"] == first + 2:  # a picture of the second photo
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(root, data, suffix=suffix, folder=folder)

    monkeypatch.setattr(ingest, "store_bytes", store_bytes)
    before = _counts(study_copy)
    with open_study(study_copy, create=False) as study:
        report = ingest.import_run(study, 2, run)
    assert [line.status for line in report.lines] == ["added", "failed"]
    assert report.lines[1].message.startswith("g1.jpg: ") and "No space left" in report.lines[1].message
    assert _counts(study_copy) == (before[0], before[1], before[2] + 1, before[3] + 1)
    _check_consistent(study_copy)
    monkeypatch.setattr(ingest, "store_bytes", real)
    with open_study(study_copy, create=False) as study:  # space again: the same import finishes the job
        assert [line.status for line in ingest.import_run(study, 2, run).lines] == ["already", "added"]


def test_unknown_visit_stops_before_any_work(study_copy: Path, photo_sets: dict) -> None:
    before = _counts(study_copy)
    for args in (
        ["score", "99", str(photo_sets["P001", 0][0]), *ASYM],
        ["import-run", "99", str(study_copy.parent)],
        ["show", "P404"],
    ):
        result = runner.invoke(app, ["study", *args, "--db", str(study_copy)])
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
        assert "no visit 99" in result.output or "no patient 'P404'" in result.output
    assert _counts(study_copy) == before
    assert not any((Path(str(study_copy) + ".files") / "tmp").glob("run-*"))


def test_importing_a_run_folder(study_copy: Path, tmp_path: Path, local_faces: Path) -> None:
    from cleftscore.run.pipeline import score_photos
    from cleftscore.run.settings import PipelineSettings

    d = ["--db", str(study_copy)]
    _ok(["study", "add-visit", "P002", "--date", "2026-11-20", "--phase", "follow-up", *d])
    originals = tmp_path / "originals"
    originals.mkdir()
    for k in range(2):
        _variant(_sample("two_faces_laughing_glasses_headtilt.jpg", local_faces), 20 + k).save(
            originals / f"late_{k}.jpg", quality=93
        )
    (originals / "broken.jpg").write_bytes(b"not an image")
    run = tmp_path / "run"
    results = score_photos(
        sorted(originals.iterdir()), PipelineSettings(method="asymmetry", size=int(SIZE)), out_dir=run
    )
    by_name = {Path(r.file).name: r for r in results}
    # The originals moved since the run: --photos says where they are now.
    moved = tmp_path / "moved"
    originals.rename(moved)
    lost = runner.invoke(app, ["study", "import-run", "8", str(run), *d])
    assert lost.exit_code == 1 and lost.output.count("the original photo is not there") == 2
    result = runner.invoke(app, ["study", "import-run", "8", str(run), "--photos", str(moved), *d])
    assert result.exit_code == 1  # broken.jpg failed in the run, and says so
    assert "Imported 2 photo(s)" in result.output and "broken.jpg" in result.output
    rows = _query(
        study_copy,
        "SELECT ph.original_name, s.score FROM scores s JOIN photos ph ON s.photo_id = ph.id WHERE ph.visit_id = 8",
    )
    assert dict(rows) == pytest.approx({n: by_name[n].score for n in ("late_0.jpg", "late_1.jpg")})
    again = runner.invoke(app, ["study", "import-run", "8", str(run), "--photos", str(moved), *d])
    assert "Imported 0 photo(s); 2 already" in again.output
    from cleftscore.run.folder import LOCK_FILE

    busy = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
                             "fcntl.flock(f, fcntl.LOCK_EX); f.write('4242'); f.flush(); print('locked', flush=True); time.sleep(60)",
                             str(run / LOCK_FILE)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert busy.stdout.readline().strip() == "locked"
        refused = runner.invoke(app, ["study", "import-run", "8", str(run), *d])
    finally:
        busy.kill()
        busy.wait()
    assert (
        refused.exit_code == 1
        and "another cleftscore run" in refused.output
        and len(refused.output.strip().splitlines()) == 1
    )
    _check_consistent(study_copy)


def test_stored_copy_of_the_exif_rotated_photo_is_upright_without_metadata(tmp_path: Path, local_faces: Path) -> None:
    from PIL import ImageOps

    from cleftscore.paths import sha256_file
    from cleftscore.study.store import store_photo

    src = local_faces / "exif_orientation6_tiny_portrait.jpg"
    with Image.open(src) as raw:
        assert raw.getexif().get(0x0112) == 6
        upright = np.asarray(ImageOps.exif_transpose(raw).convert("RGB"))
        stored_as = np.asarray(raw.convert("RGB"))
    # A JPEG with GPS coordinates too.
    gps = tmp_path / "gps.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 0.0), 3: "E", 4: (4.0, 53.0, 0.0)}
    Image.fromarray(stored_as).save(gps, exif=exif, quality=95)
    for path, expected in ((src, upright), (gps, None)):
        rec = store_photo(tmp_path / "files", path)
        stored = tmp_path / "files" / rec.stored_path
        assert rec.sha256 == sha256_file(path) and rec.stored_sha256 == sha256_file(stored)
        with Image.open(stored) as im:
            assert im.format == "PNG" and len(im.getexif()) == 0 and not {"exif", "icc_profile", "dpi"} & set(im.info)
            pixels = np.asarray(im.convert("RGB"))
        if expected is not None:
            assert np.array_equal(pixels, expected) and not np.array_equal(pixels, stored_as)
        assert b"Exif" not in stored.read_bytes() and b"GPS" not in stored.read_bytes()


def test_the_rotated_photo_scored_into_a_visit_is_stored_upright_without_exif(
    study_copy: Path, local_faces: Path
) -> None:
    from PIL import ImageOps

    d = ["--db", str(study_copy)]
    _ok(["study", "add-visit", "P001", "--date", "2026-11-30", "--phase", "follow-up", *d])
    src = local_faces / "exif_orientation6_tiny_portrait.jpg"
    out = _ok(["study", "score", "8", str(src), *ASYM, *d])
    assert "exif_orientation6_tiny_portrait.jpg: score = " in out
    (stored,) = _query(study_copy, "SELECT stored_path FROM photos WHERE visit_id = 8")[0]
    with Image.open(Path(str(study_copy) + ".files") / stored) as im, Image.open(src) as raw:
        assert len(im.getexif()) == 0 and "exif" not in im.info
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(ImageOps.exif_transpose(raw).convert("RGB")))


@pytest.mark.slow  # a fresh interpreter imports torch and dlib: about 10 s of CPU
def test_sigkill_during_a_scoring_run_leaves_a_consistent_rerunnable_study(
    study_copy: Path, tmp_path: Path, local_faces: Path
) -> None:
    d = _follow_up_visit(study_copy)
    n = 8
    folder = _photo_folder(tmp_path / "many", local_faces, n, 30)
    before = _counts(study_copy)
    proc = _cli_process(["study", "score", "8", str(folder), *ASYM, *d])
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if _counts(study_copy)[2] > before[2] + 2:  # a few photos in, more to come
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = _counts(study_copy)[2] - before[2]
    assert 0 < done < n
    _check_consistent(study_copy)
    # Running it again scores only the rest, and cleans up the killed run's folder.
    result = runner.invoke(app, ["study", "score", "8", str(folder), *ASYM, *d])
    assert result.exit_code == 0, result.output
    assert f"Scored {n - done} photo(s); {done} already" in result.output
    assert _counts(study_copy) == (before[0], before[1], before[2] + n, before[3] + n)
    _check_consistent(study_copy)
    assert not any((Path(str(study_copy) + ".files") / "tmp").iterdir())
    check = runner.invoke(app, ["study", "check", "--clean", *d])
    assert check.exit_code == 0 and check.output.startswith("OK;"), check.output


def test_check_finds_changed_missing_and_unreferenced_files(study_copy: Path) -> None:
    files = Path(str(study_copy) + ".files")
    d = ["--db", str(study_copy)]
    assert (
        runner.invoke(app, ["study", "check", *d]).output.strip() == "OK; 0 unreferenced file(s) (--clean removes them)"
    )
    import json

    (stored, other) = (row[0] for row in _query(study_copy, "SELECT stored_path FROM photos LIMIT 2"))
    heatmap = json.loads(_query(study_copy, "SELECT pictures_json FROM scores LIMIT 1")[0][0])["heatmap.png"]
    (files / stored).write_bytes(b"changed")
    (files / other).unlink()
    (files / heatmap).unlink()
    stray = files / "pictures" / "00" / "stray.png"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"left by a killed run")
    result = runner.invoke(app, ["study", "check", "--clean", *d])
    assert result.exit_code == 1
    problems = [line for line in result.output.splitlines() if line.startswith("problem:")]
    assert len(problems) == 3 and "3 problem(s); 1 unreferenced file(s) removed" in result.output
    assert (
        "has changed" in problems[0]
        and "stored copy" in problems[1]
        and "picture heatmap.png of score 1 is missing" in problems[2]
    )
    assert not stray.exists() and (files / stored).exists()  # referenced files are never removed


@pytest.mark.slow
def test_ctrl_c_during_a_scoring_run_keeps_what_was_recorded(
    study_copy: Path, tmp_path: Path, local_faces: Path
) -> None:
    d = _follow_up_visit(study_copy)
    folder = _photo_folder(tmp_path / "many", local_faces, 8, 50)
    before = _counts(study_copy)
    proc = _cli_process(["study", "score", "8", str(folder), *ASYM, *d])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and _counts(study_copy)[2] <= before[2] + 1:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted." in err and "run the same command again" in err and "Traceback" not in err
    _check_consistent(study_copy)
    assert not any((Path(str(study_copy) + ".files") / "tmp").iterdir())  # the scratch run folder went too


@pytest.mark.slow
def test_two_processes_scoring_the_same_photos_record_each_once(
    study_copy: Path, tmp_path: Path, local_faces: Path
) -> None:
    d = _follow_up_visit(study_copy)
    folder = _photo_folder(tmp_path / "same", local_faces, 4, 60)
    before = _counts(study_copy)
    procs = [_cli_process(["study", "score", "8", str(folder), *ASYM, *d]) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert _counts(study_copy) == (before[0], before[1], before[2] + 4, before[3] + 4)
    assert _query(
        study_copy,
        "SELECT COUNT(*) FROM (SELECT photo_id FROM scores GROUP BY photo_id, settings_key HAVING COUNT(*) > 1)",
    ) == [(0,)]
    _check_consistent(study_copy)
