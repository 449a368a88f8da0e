"""Integrity and security defects found by attack (issue 24), each reproduced and held.

Sample faces from ``tests/data/faces`` stand in for patients; nothing here is a real patient photo.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleftscore.run.inputs import find_inputs, photo_ids

#: Examples of the property tests (reported in the issue's note).
NAME_EXAMPLES = 120
FOLDER_EXAMPLES = 15


def id_key(photo_id: str) -> str:
    """Two folder names are one on macOS and Windows when this is equal (case and Unicode form folded)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", photo_id).casefold())


# -- 1. photo ids: unique by construction, stable ---------------------------------------------------

_STEMS = st.sampled_from(["a", "A", "a-2", "A-2", "a-3", "a-2-2", "photo", "é", "e\u0301", "É", "x y", "ß", "SS", "_"])
#: File names that collide as often as possible: case, NFC/NFD, names that look like generated suffixes.
NAMES = st.lists(
    st.builds(lambda stem, n, ext: f"{stem}{n}{ext}", _STEMS, st.sampled_from(["", "-2", "-3", "-2-2", "__b"]),
              st.sampled_from([".jpg", ".PNG", ".png"])),
    max_size=14,
)  # fmt: skip
#: Relative paths with sub-folders whose joined ids collide with plain names (``p/a`` and ``p__a``).
PATHS = st.lists(
    st.builds(lambda folder, name: f"{folder}{name}", st.sampled_from(["", "p/", "P/", "p__", "q/p/", "e\u0301/", "é/"]),
              NAMES.filter(bool).map(lambda names: names[0])),
    max_size=10, unique_by=lambda p: unicodedata.normalize("NFC", p).casefold(),
)  # fmt: skip


def _check_ids(stems: list[str], ids: list[str]) -> None:
    assert len(ids) == len(stems)
    assert len({id_key(i) for i in ids}) == len(ids), ids  # unique on every file system
    for stem, pid in zip(stems, ids, strict=True):
        assert re.fullmatch(r"[\w.-]+", pid) and not pid.startswith("."), pid
        assert unicodedata.is_normalized("NFC", pid)
        assert pid == stem or re.fullmatch(re.escape(stem) + r"-\d+", pid), (stem, pid)


@settings(max_examples=NAME_EXAMPLES, deadline=None, derandomize=True)
@given(NAMES)
def test_photo_ids_are_unique_whatever_the_names(names: list[str]) -> None:
    ids = photo_ids(names)
    _check_ids([photo_ids([n])[0] for n in names], ids)
    assert photo_ids(names) == ids  # the same ids on a re-run
    assert photo_ids([unicodedata.normalize("NFD", n) for n in names]) == ids  # macOS hands out NFD names
    assert photo_ids([*names, "a.jpg", "A-2.png"])[: len(ids)] == ids  # more photos never rename earlier ones


@settings(max_examples=FOLDER_EXAMPLES, deadline=None, derandomize=True)
@given(PATHS)
def test_ids_of_a_folder_are_unique_and_the_same_on_a_rerun(paths: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made = []
        for rel in paths:
            f = root / rel
            if any(id_key(str(m)) == id_key(str(f)) for m in made) or f.exists():
                continue  # this file system may fold the name onto one already made
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"x")
            made.append(f)
        if not made:
            return
        found = find_inputs([root])
        assert sorted(i.path for i in found) == sorted(made)
        ids = [i.photo_id for i in found]
        assert len({id_key(i) for i in ids}) == len(ids), ids
        assert all(re.fullmatch(r"[\w.-]+", i) for i in ids)
        assert [i.photo_id for i in find_inputs([root])] == ids


def test_names_that_differ_only_in_normalization_or_case_get_two_ids() -> None:
    assert photo_ids(["é.jpg", "e\u0301.png", "É.jpg"]) == ["é", "é-2", "É-3"]
    assert photo_ids(["a-2.jpg", "a.jpg", "a.png"]) == ["a-2", "a", "a-3"]
    assert photo_ids(["ß.jpg", "SS.jpg", "ss.jpg"]) == ["ß", "SS-2", "ss-3"]
    long = "x" * 300
    assert photo_ids([f"{long}.jpg", f"{long}y.jpg"]) == ["x" * 80, "x" * 80 + "-2"]


# -- 2. a run folder's paths stay inside it ----------------------------------------------------------


def test_pictures_are_read_only_from_inside_the_photo_folder(tmp_path: Path) -> None:
    from cleftscore.errors import CleftscoreError
    from cleftscore.run.folder import read_picture

    run = tmp_path / "run"
    folder = run / "photos" / "a"
    folder.mkdir(parents=True)
    (folder / "panel.png").write_bytes(b"panel")
    (tmp_path / "secret.png").write_bytes(b"secret")
    assert read_picture(run, "a", "panel.png") == b"panel"
    for bad in ("../../../secret.png", "/etc/passwd", "snapshots/../../b/x.png", "", ".", "a\\..\\x"):
        with pytest.raises(CleftscoreError, match="not a file inside"):
            read_picture(run, "a", bad)
    (folder / "link.png").symlink_to(tmp_path / "secret.png")
    (folder / "sub").symlink_to(tmp_path, target_is_directory=True)
    for linked in ("link.png", "sub/secret.png"):
        with pytest.raises(CleftscoreError, match="symbolic link"):
            read_picture(run, "a", linked)
    (run / "photos" / "b").symlink_to(folder, target_is_directory=True)
    with pytest.raises(CleftscoreError, match="symbolic link"):
        read_picture(run, "b", "panel.png")


# -- 3. a refused database is left byte for byte as it was ---------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rollback_journal_study(path: Path) -> None:
    """A study in the rollback-journal mode an older tool or a copy may leave (header bytes 18-19 = 1)."""
    import sqlite3

    from cleftscore.study.db import open_study

    open_study(path).close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    assert path.read_bytes()[18:20] == b"\x01\x01"


def test_a_study_of_a_future_schema_is_refused_untouched(tmp_path: Path) -> None:
    import sqlite3

    from cleftscore.study.db import StudyVersionError, open_study

    db = tmp_path / "future.sqlite"
    _rollback_journal_study(db)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE alembic_version SET version_num = 'ffff_from_the_future'")
    con.close()
    before = _digest(db)
    with pytest.raises(StudyVersionError, match="newer cleftscore"):
        open_study(db)
    assert _digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["future.sqlite"]


def test_another_programs_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    import sqlite3

    from cleftscore.study.db import StudyCorruptError, open_study

    db = tmp_path / "other.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
        con.execute("INSERT INTO photos (name) VALUES ('x')")
    con.close()
    text = tmp_path / "notes.sqlite"
    text.write_bytes(b"these are notes, not a database\n" * 40)
    for path in (db, text):
        before = _digest(path)
        with pytest.raises(StudyCorruptError, match="not a cleftscore study|not a SQLite database"):
            open_study(path)
        assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite", "other.sqlite"]


# -- 6. a full disk, a denied permission, a read-only file system: named, not "damaged" -------------------


@pytest.mark.parametrize(
    ("sqlite_says", "named"),
    [("attempt to write a readonly database", "read-only"), ("unable to open database file", "permission denied"),
     ("disk I/O error", "input/output error"), ("database or disk is full", "disk holding it is full")],
)  # fmt: skip
def test_the_machines_problems_are_named_as_such(tmp_path: Path, sqlite_says: str, named: str) -> None:
    import sqlite3

    from sqlalchemy import exc

    from cleftscore.study.db import StudyCorruptError, StudyError, _sqlite_errors

    with pytest.raises(StudyError) as caught, _sqlite_errors(tmp_path / "s.sqlite"):
        raise exc.OperationalError("INSERT", {}, sqlite3.OperationalError(sqlite_says))
    assert not isinstance(caught.value, StudyCorruptError) and named in str(caught.value)
    with pytest.raises(StudyCorruptError, match="restore it from a backup"), _sqlite_errors(tmp_path / "s.sqlite"):
        raise exc.DatabaseError("SELECT", {}, sqlite3.DatabaseError("database disk image is malformed"))


def test_environment_problems_are_told_from_the_photos() -> None:
    import errno

    from cleftscore.errors import ImageLoadError, environment_problem

    assert environment_problem(OSError(errno.ENOSPC, "No space left on device")) == "the disk is full"
    assert environment_problem(PermissionError(errno.EACCES, "denied")) == "permission denied"
    assert environment_problem(OSError(errno.EROFS, "ro")) == "the file system is read-only"
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise ValueError("while writing") from inner
    except ValueError as outer:
        assert environment_problem(outer) == "the disk is full"
    assert environment_problem(ImageLoadError("a.jpg: damaged")) is None
    assert environment_problem(OSError(errno.ENOENT, "missing")) is None


# -- 4. one server per study -----------------------------------------------------------------------------


def _files_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


# -- 5. uploads: gone when their job ends; the study's copies EXIF-free ------------------------------------


def _job_with_upload(state: object, root: Path, name: str, status: str, photo: str = "queued") -> tuple[int, Path]:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"photo as sent, GPS and all")
    job = state.add_job(1, "asymmetry", "mouth", folder, ["a.jpg"])  # type: ignore[attr-defined]
    state.set_job(job, status)  # type: ignore[attr-defined]
    state.set_photo(job, 0, photo)  # type: ignore[attr-defined]
    return job, folder


def test_uploads_are_deleted_when_their_job_is_cancelled_and_at_restart(tmp_path: Path) -> None:
    """Issue 24, 3: cancelled jobs kept the photos as sent for ever."""
    from cleftscore.web.jobs import JobQueue, ServerState

    web = tmp_path / "web"
    state = ServerState(web / "server.sqlite")
    uploads = web / "uploads"
    queue = JobQueue(state, None, None)  # a server, its worker not started
    queued, queued_dir = _job_with_upload(state, uploads, "job-queued", "queued")
    assert queue.cancel(queued) and state.job(queued).status == "cancelled"
    assert not queued_dir.exists()

    # What a crash or an older server left: folders of ended jobs, and one no job names.
    _, done_dir = _job_with_upload(state, uploads, "job-done", "done", "scored")
    _, cancelled_dir = _job_with_upload(state, uploads, "job-cancelled", "cancelled", "cancelled")
    _, failed_dir = _job_with_upload(state, uploads, "job-failed", "failed", "failed")
    running, running_dir = _job_with_upload(state, uploads, "job-running", "running", "running")
    _, finished_dir = _job_with_upload(state, uploads, "job-nothing-left", "interrupted", "scored")
    (uploads / "job-orphan").mkdir()
    JobQueue(state, None, None)  # a server starts
    assert state.job(running).status == "interrupted" and state.job(running).rerunnable
    assert sorted(p.name for p in uploads.iterdir()) == [running_dir.name]
    for gone in (done_dir, cancelled_dir, failed_dir, finished_dir):
        assert not gone.exists()


def test_study_check_lists_and_cleans_stale_uploads(tmp_path: Path) -> None:
    from cleftscore.study.check import check_study
    from cleftscore.study.db import open_study
    from cleftscore.web.jobs import ServerLock, ServerState

    db = tmp_path / "study.sqlite"
    with open_study(db) as study:
        web = study.files / "web"
        state = ServerState(web / "server.sqlite")
        _, ended = _job_with_upload(state, web / "uploads", "job-1", "cancelled", "cancelled")
        _, resumable = _job_with_upload(state, web / "uploads", "job-2", "interrupted", "interrupted")
        (web / "uploads" / "job-3").mkdir()
        report = check_study(study)
        assert report.ok and report.stale_uploads == [ended, web / "uploads" / "job-3"] and ended.exists()
        with ServerLock(db):  # a server is running: it may be staging an upload right now
            report = check_study(study, clean=True)
        assert ended.exists() and "serve is running" in report.uploads_note
        report = check_study(study, clean=True)
        assert report.uploads_removed == 2 and not ended.exists() and resumable.exists()
        assert sorted(p.name for p in (web / "uploads").iterdir()) == ["job-2"]


def test_the_stored_copy_of_a_photo_carries_no_exif(tmp_path: Path, local_faces: Path) -> None:
    from PIL import Image

    from cleftscore.study.store import store_photo

    photo = tmp_path / "gps.jpg"
    im = Image.open(local_faces / "tiny_128px_portrait_uniform.jpg").convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 0.0)  # GPSLatitude
    im.save(photo, exif=exif, comment=b"patient P001")
    assert Image.open(photo).getexif()
    stored = store_photo(tmp_path / "files", photo)
    with Image.open(tmp_path / "files" / stored.stored_path) as copy:
        assert not copy.getexif() and not copy.info.get("exif") and set(copy.info) <= {"dpi", "gamma"}


# -- 7. file names print as they are -----------------------------------------------------------------------

#: A name that restyles a terminal through Rich markup, and one that clears it through an ESC sequence.
SPOOFS = ("[red]RED[bold]B.png", "e\x1b[2Jx.png")


def test_study_show_prints_file_names_literally(tmp_path: Path) -> None:
    """Issue 24, 9: ``[red]RED[bold]B.png`` printed as ``REDB.png``; raw ESC reached the terminal."""
    from typer.testing import CliRunner

    from cleftscore.cli import app
    from cleftscore.study.db import open_study
    from cleftscore.study.models import Photo
    from cleftscore.study.records import add_patient, add_visit

    db = tmp_path / "study.sqlite"
    with open_study(db) as study:
        add_patient(study, "P001")
        visit = add_visit(study, "P001", date=dt.date(2026, 1, 10), phase="pre-op")
        with study.transaction() as s:
            for k, name in enumerate(SPOOFS):
                s.add(Photo(visit_id=visit.id, sha256=f"{k}" * 64, original_name=name, stored_path=f"photos/{k}.png",
                            stored_sha256=f"{k}" * 64, width=64, height=64))  # fmt: skip
    result = CliRunner().invoke(app, ["study", "show", "P001", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "[red]RED[bold]B.png" in result.output
    assert "e\\x1b[2Jx.png" in result.output and "\x1b" not in result.output


def test_literal_escapes_markup_and_every_control_character() -> None:
    from rich.console import Console

    from cleftscore.cli._common import literal

    cases = {**{name: name.replace("\x1b", "\\x1b") for name in SPOOFS}, "a\rb.png": "a\\rb.png",
             "x\u202egnp.exe": "x\\u202egnp.exe", "c\x9bd.png": "c\\x9bd.png", "in\\side": "in\\side",
             "[/]": "[/]", "[bold]": "[bold]"}  # fmt: skip
    for name, expected in cases.items():
        console = Console(record=True, width=200, force_terminal=True, color_system="truecolor")
        console.print(literal(name), highlight=False, end="")
        assert console.export_text(styles=False) == expected, name


# -- 8. refusals that were wrong, sessions, logins, Origin ---------------------------------------------------

WEB = "http://127.0.0.1:8765"


def _web(db: Path, **kw: object) -> object:
    from cleftscore.web.app import create_app
    from cleftscore.web.context import MethodChoice
    from cleftscore.web.settings import WebSettings

    no_gan = MethodChoice("gan", False, "no weights in tests")
    return create_app(WebSettings(db=db, size=128, start_worker=False, **kw), gan=no_gan)  # type: ignore[arg-type]


def _csrf(app: object) -> dict[str, str]:
    return {"X-CSRF-Token": app.state.ctx.guard.csrf_token}  # type: ignore[attr-defined]


def _upload(client: object, app: object, name: str, data: bytes) -> object:
    if client.get("/api/patients/P001").status_code == 404:  # type: ignore[attr-defined]
        client.post("/api/patients", json={"code": "P001"}, headers=_csrf(app))  # type: ignore[attr-defined]
    visit = client.post("/api/patients/P001/visits", json={"date": "2026-01-10", "phase": "pre-op"},  # type: ignore[attr-defined]
                        headers=_csrf(app)).json()["id"]  # fmt: skip
    return client.post(f"/api/visits/{visit}/jobs", files=[("files", (name, data, "image/jpeg"))], headers=_csrf(app))  # type: ignore[attr-defined]


def test_patient_codes_are_one_whatever_their_case(tmp_path: Path) -> None:
    """Issue 24, 10: ``P001`` and ``p001`` were two patients."""
    import sqlite3

    from cleftscore.study.db import StudyError, open_study
    from cleftscore.study.records import add_patient, find_patient

    db = tmp_path / "s.sqlite"
    with open_study(db) as study:
        add_patient(study, "P001")
        with pytest.raises(StudyError, match="already in the study as P001"):
            add_patient(study, "p001")
        with study.transaction(write=False) as s:
            assert find_patient(s, "p001").code == "P001"
    with sqlite3.connect(db) as con, pytest.raises(sqlite3.IntegrityError):  # the database says so too
        con.execute("INSERT INTO patients (code, created_at) VALUES ('p001', '2026-01-01')")


def _login(client: object, token: str) -> object:
    return client.post("/login", data={"token": token}, follow_redirects=False)  # type: ignore[attr-defined]


def test_sessions_expire_and_logout_ends_them(tmp_path: Path) -> None:
    """Issue 24, 10: sessions never expired; there was no logout."""
    from fastapi.testclient import TestClient

    from cleftscore.web.security import hash_token

    app = _web(tmp_path / "s.sqlite", host="192.0.2.1", token_hash=hash_token("secret"), session_hours=2.0)
    guard = app.state.ctx.guard  # type: ignore[attr-defined]
    now = [1000.0]
    guard.clock = lambda: now[0]
    base = "http://192.0.2.1:8765"
    with TestClient(app, base_url=base) as client:
        assert _login(client, "secret").status_code == 303
        assert client.get("/api/patients").status_code == 200
        now[0] += 2 * 3600 - 1
        assert client.get("/api/patients").status_code == 200
        now[0] += 2
        assert client.get("/api/patients").status_code == 401  # expired after 2 h
        assert _login(client, "secret").status_code == 303
        assert client.get("/api/patients").status_code == 200
        assert client.post("/logout", headers=_csrf(app), follow_redirects=False).status_code == 303
        assert client.get("/api/patients").status_code == 401
        assert _login(client, "secret").status_code == 303
        assert "Log out" in client.get("/").text
        assert client.post("/logout", data={"csrf": "wrong"}, follow_redirects=False).status_code == 403
        assert client.get("/api/patients").status_code == 200
        page_form = {"csrf": app.state.ctx.guard.csrf_token}  # type: ignore[attr-defined]
        assert client.post("/logout", data=page_form, follow_redirects=False).status_code == 303
        assert client.get("/api/patients").status_code == 401


def test_login_attempts_are_rate_limited(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from cleftscore.web.security import hash_token

    app = _web(tmp_path / "s.sqlite", host="192.0.2.1", token_hash=hash_token("secret"))
    guard = app.state.ctx.guard  # type: ignore[attr-defined]
    now = [0.0]
    guard.clock = lambda: now[0]
    with TestClient(app, base_url="http://192.0.2.1:8765") as client:
        codes = [_login(client, f"guess{k}").status_code for k in range(guard.login_attempts)]
        assert codes == [401] * guard.login_attempts
        assert _login(client, "secret").status_code == 429  # even the right one, until the window passes
        now[0] += guard.login_window + 1
        assert _login(client, "secret").status_code == 303


#: Origins and the answer a POST with the CSRF token gets: only the server's own scheme, host and port pass.
ORIGINS = {WEB: 201, "http://127.0.0.1:9999": 403, "https://127.0.0.1:8765": 403, "http://127.0.0.1": 403,
           "http://localhost:8765": 403, "http://evil.example:8765": 403, "null": 201}  # fmt: skip


def test_origin_is_compared_with_scheme_host_and_port(tmp_path: Path) -> None:
    """Issue 24, 10: the Origin check ignored the port (another local server could post)."""
    from fastapi.testclient import TestClient

    app = _web(tmp_path / "s.sqlite")
    with TestClient(app, base_url=WEB) as client:
        for k, (origin, status) in enumerate(ORIGINS.items()):
            r = client.post("/api/patients", json={"code": f"P{k}"}, headers={**_csrf(app), "Origin": origin})
            assert r.status_code == status, (origin, r.text)
