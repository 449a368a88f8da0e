"""Issue 24's reproductions that run the scoring pipeline or start processes (each a few seconds).

Sample faces from ``tests/data/faces`` stand in for patients; nothing here is a real patient photo.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import socket
from pathlib import Path

import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from cleftscore.cli import app
from test_integrity import WEB, _files_digest, _upload, _web  # the fast file's helpers (tests/ is on the path)

pytestmark = pytest.mark.slow
runner = CliRunner()
SIZE = 128
FACES = ("tiny_128px_portrait_uniform.jpg", "grayscale_tiny_128px_portrait.jpg", "exif_orientation6_tiny_portrait.jpg")


def _study(tmp: Path) -> tuple[Path, int]:
    from cleftscore.study.db import open_study
    from cleftscore.study.records import add_patient, add_visit

    db = tmp / "study.sqlite"
    with open_study(db) as study:
        add_patient(study, "P001")
        visit = add_visit(study, "P001", date=dt.date(2026, 1, 10), phase="pre-op")
    return db, int(visit.id)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _three_faces(folder: Path, local_faces: Path) -> dict[str, bytes]:
    """``a-2.jpg``, ``a.jpg`` and ``a.png``: three different faces whose stems collide."""
    folder.mkdir()
    names = ("a-2.jpg", "a.jpg", "a.png")
    for name, face in zip(names, FACES, strict=True):
        im = ImageOps.exif_transpose(Image.open(local_faces / face)).convert("RGB")
        im.save(folder / name)
    return {n: (folder / n).read_bytes() for n in names}


def _photos(db: Path) -> dict[str, tuple[str, str, int]]:
    """Original name -> (SHA-256, stored copy's file, number of scores) of every photo in the study."""
    from sqlalchemy import select

    from cleftscore.study.db import open_study
    from cleftscore.study.models import Photo

    with open_study(db, create=False) as study, study.transaction(write=False) as s:
        return {p.original_name: (p.sha256, str(study.files / p.stored_path), len(p.scores))
                for p in s.scalars(select(Photo))}  # fmt: skip


def _pixels(path: str | Path) -> bytes:
    from cleftscore.io import load_image

    return load_image(path).tobytes()


def test_study_score_files_every_photo_under_its_own_name(tmp_path: Path, local_faces: Path) -> None:
    """Issue 24, 1: ``a-2.jpg, a.jpg, a.png`` through ``cleftscore study score``; each photo its own bytes."""
    db, visit = _study(tmp_path)
    originals = _three_faces(tmp_path / "photos", local_faces)
    result = runner.invoke(app, ["study", "score", str(visit), str(tmp_path / "photos"), "--db", str(db),
                                 "--method", "asymmetry", "--size", str(SIZE)])  # fmt: skip
    assert result.exit_code == 0, result.output
    photos = _photos(db)
    assert sorted(photos) == sorted(originals)
    for name, data in originals.items():
        sha, stored, scores = photos[name]
        assert sha == _sha(data) and scores == 1, name
        assert _pixels(stored) == _pixels(tmp_path / "photos" / name), name


def test_a_photo_changed_while_it_is_scored_is_stored_as_it_was_scored(
    tmp_path: Path, local_faces: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hash and the stored copy come from the bytes that were decoded and scored."""
    from cleftscore.run import photo
    from cleftscore.run.settings import PipelineSettings
    from cleftscore.study.db import open_study
    from cleftscore.study.ingest import score_into_visit

    db, visit = _study(tmp_path)
    originals = _three_faces(tmp_path / "photos", local_faces)
    target = tmp_path / "photos" / "a.png"
    real = photo.prepare_photo

    def prepare_then_swap(path: Path, **kw: object) -> object:
        prepared = real(path, **kw)
        # Another program replaces the user's file once it has been decoded.
        target.write_bytes(originals["a-2.jpg"])
        return prepared

    monkeypatch.setattr(photo, "prepare_photo", prepare_then_swap)
    with open_study(db, create=False) as study:
        report = score_into_visit(study, visit, [target], PipelineSettings(method="asymmetry", size=SIZE))
    assert [line.status for line in report.lines] == ["added"], report.lines
    sha, stored, _ = _photos(db)["a.png"]
    assert sha == _sha(originals["a.png"])
    png = tmp_path / "a.png"
    png.write_bytes(originals["a.png"])
    assert _pixels(stored) == _pixels(png)


def test_the_stored_copy_is_refused_when_its_bytes_are_not_the_ones_hashed(tmp_path: Path, local_faces: Path) -> None:
    from cleftscore.errors import CleftscoreError
    from cleftscore.study.store import store_photo

    photo = local_faces / FACES[0]
    with pytest.raises(CleftscoreError, match="changed while it was being scored"):
        store_photo(tmp_path, photo, sha256="0" * 64)
    assert store_photo(tmp_path, photo, sha256=_sha(photo.read_bytes())).sha256 == _sha(photo.read_bytes())


@pytest.fixture()
def scored_run(tmp_path: Path, local_faces: Path) -> Path:
    from cleftscore.run.pipeline import score_photos
    from cleftscore.run.settings import PipelineSettings

    photos = tmp_path / "photos"
    photos.mkdir()
    ImageOps.exif_transpose(Image.open(local_faces / FACES[0])).convert("RGB").save(photos / "a.png")
    run = tmp_path / "run"
    score_photos([photos / "a.png"], PipelineSettings(method="asymmetry", size=SIZE), out_dir=run)
    return run


def _import(db: Path, visit: int, run: Path) -> list[tuple[str, str]]:
    from cleftscore.study.db import open_study
    from cleftscore.study.ingest import import_run

    with open_study(db, create=False) as study:
        return [(line.status, line.message) for line in import_run(study, visit, run).lines]


def test_import_run_follows_no_symbolic_link_out_of_the_run_folder(tmp_path: Path, scored_run: Path) -> None:
    """Issue 24, 2: ``photos/<id>/panel.png -> /any/file`` is refused, nothing is stored."""
    db, visit = _study(tmp_path)
    panel = scored_run / "photos" / "a" / "panel.png"
    secret = tmp_path / "secret.png"
    secret.write_bytes(panel.read_bytes()[:-1] + b"!")  # any file the user may read
    panel.unlink()
    panel.symlink_to(secret)
    [(status, message)] = _import(db, visit, scored_run)
    assert status == "failed" and "symbolic link" in message, message
    assert _photos(db) == {}


def test_import_run_refuses_a_picture_path_that_leaves_the_folder(tmp_path: Path, scored_run: Path) -> None:
    """Issue 24, 2: ``../../x`` in ``result.json``'s ``pictures`` is refused, nothing is stored."""
    import json

    db, visit = _study(tmp_path)
    record = scored_run / "photos" / "a" / "result.json"
    data = json.loads(record.read_text())
    (tmp_path / "x.png").write_bytes(b"not the run's")
    data["pictures"] = [*data["pictures"], "../../../x.png"]
    record.write_text(json.dumps(data))
    [(status, message)] = _import(db, visit, scored_run)
    assert status == "failed" and "not a file inside" in message, message
    assert _photos(db) == {}


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_space(*_a: object, **_k: object) -> None:
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_second_score_that_meets_a_full_disk_keeps_the_good_photo_folder(
    scored_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 24, 7: the disk fills while the same photo is scored again into its run folder."""
    import cleftscore.io
    from cleftscore.run.folder import read_record
    from cleftscore.run.pipeline import score_photos
    from cleftscore.run.settings import PipelineSettings

    folder = scored_run / "photos" / "a"
    before = _tree(folder)
    assert read_record(scored_run, "a").ok
    monkeypatch.setattr(cleftscore.io, "write_png", _no_space)
    photo = scored_run.parent / "photos" / "a.png"
    [result] = score_photos([photo], PipelineSettings(method="asymmetry", size=SIZE), out_dir=scored_run)
    assert not result.ok and "No space left" in result.message
    assert _tree(folder) == before


def test_a_rescore_that_meets_a_full_disk_keeps_the_good_photo_folder(
    scored_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cleftscore.io
    from cleftscore.run.rescore import rescore_run
    from cleftscore.score.paper import ScoreSettings

    folder = scored_run / "photos" / "a"
    before = _tree(folder)
    monkeypatch.setattr(cleftscore.io, "write_png", _no_space)
    [result] = rescore_run(scored_run, ScoreSettings(roi="face"), workers=1)
    assert not result.ok and "No space left" in result.message
    assert _tree(folder) == before


#: A name that restyles a terminal through Rich markup, and one that clears it through an ESC sequence.
SPOOFS = ("[red]RED[bold]B.png", "e\x1b[2Jx.png")


def test_score_and_study_score_print_file_names_literally(tmp_path: Path, local_faces: Path) -> None:
    """Issue 24, 9: ``score`` and ``study score`` print the names as they are."""
    photos = tmp_path / "photos"
    photos.mkdir()
    face = ImageOps.exif_transpose(Image.open(local_faces / FACES[0])).convert("RGB")
    for k, name in enumerate(SPOOFS):
        face.rotate(k * 2).save(photos / name)
    (photos / "[bold]broken.png").write_bytes(b"not a photo")
    asym = ["--method", "asymmetry", "--size", str(SIZE)]
    scored = runner.invoke(app, ["score", str(photos), "--out", str(tmp_path / "run"), *asym])
    db, visit = _study(tmp_path)
    recorded = runner.invoke(app, ["study", "score", str(visit), str(photos), "--db", str(db), *asym])
    for result in (scored, recorded):
        assert "\x1b" not in result.output, result.output
        assert "[bold]broken.png" in result.output and "RED[bold]B.png" in result.output, result.output
        assert "e\\x1b[2Jx.png" in result.output, result.output


# -- Ray: ``--ray auto`` stays on this machine's loopback -----------------------------------------------


def _process_tree(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            kids.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(kids.get(p, []))
    return found


def _address(hexaddr: str, v6: bool) -> tuple[str, int]:
    ip, port = hexaddr.split(":")
    raw = bytes.fromhex(ip)
    if v6:  # four little-endian 32-bit words
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        return socket.inet_ntop(socket.AF_INET6, raw), int(port, 16)
    return socket.inet_ntoa(raw[::-1]), int(port, 16)


def listening_sockets(pid: int) -> list[tuple[str, str, int, str]]:
    """(protocol, address, port, process) of every listening TCP and bound UDP socket of a process tree.

    Read from ``/proc/net/{tcp,tcp6,udp,udp6}`` and the processes' file descriptors (Linux).
    """
    owner: dict[int, str] = {}
    for p in _process_tree(pid):
        try:
            name = Path(f"/proc/{p}/comm").read_text().strip()
            fds = os.listdir(f"/proc/{p}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{p}/fd/{fd}")
                if link.startswith("socket:["):
                    owner[int(link[8:-1])] = name
    rows = set()
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
                f = line.split()
                if int(f[9]) in owner and (f[3] == "0A" or proto.startswith("udp")):  # 0A: LISTEN
                    rows.add((proto, *_address(f[1], proto.endswith("6")), owner[int(f[9])]))
    return sorted(rows)


LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="lists sockets through /proc (Linux)")
def test_ray_auto_binds_and_advertises_loopback_only() -> None:
    """Issue 24, 8: ``--ray auto`` listened on the machine's network address; the token file was 0644."""
    ray = pytest.importorskip("ray")
    from cleftscore.distributed import RaySettings
    from cleftscore.distributed.actors import ray_session

    token = Path.home() / ".ray" / "auth_token"
    with ray_session(RaySettings(address="auto")):

        @ray.remote
        def pid() -> int:
            return os.getpid()

        assert ray.get(pid.remote()) != os.getpid()  # a worker ran
        sockets = listening_sockets(os.getpid())
        nodes = [n["NodeManagerAddress"] for n in ray.nodes()]
    print("\n".join(" ".join(map(str, s)) for s in sockets))  # the note's socket list (pytest -s)
    assert {"gcs_server", "raylet"} <= {s[3] for s in sockets}
    outside = [s for s in sockets if s[1] not in LOOPBACK]
    assert not outside, f"Ray listens beyond loopback: {outside}"
    assert nodes == ["127.0.0.1"]
    assert not (token.exists() and token.stat().st_mode & 0o077), oct(token.stat().st_mode)


# -- Moved from test_integrity.py to keep the default suite's share under its budget (each ~1 s) --------


def test_a_camera_jpeg_with_several_pictures_is_accepted(tmp_path: Path, local_faces: Path) -> None:
    """Issue 24, 10: MPO (a phone's JPEG with a second picture) was refused with 415."""
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    face = Image.open(local_faces / "tiny_128px_portrait_uniform.jpg").convert("RGB")
    buf = io.BytesIO()
    face.save(buf, format="MPO", save_all=True, append_images=[face.rotate(90)])
    assert Image.open(io.BytesIO(buf.getvalue())).format == "MPO"
    app = _web(tmp_path / "s.sqlite")
    with TestClient(app, base_url=WEB) as client:
        r = _upload(client, app, "phone.jpg", buf.getvalue())
    assert r.status_code == 202, r.text
    assert [p["name"] for p in r.json()["photos"]] == ["phone.jpg"]


def test_a_photo_of_too_many_pixels_is_413_not_damaged(tmp_path: Path) -> None:
    """Issue 24, 10: a 100000 x 100000 PNG got 415 "damaged image"."""
    import struct
    import zlib

    from fastapi.testclient import TestClient

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    app = _web(tmp_path / "s.sqlite")
    with TestClient(app, base_url=WEB) as client:
        r = _upload(client, app, "huge.png", png)
    assert r.status_code == 413, r.text
    assert "over the limit" in r.text and "damaged" not in r.text


def test_any_loopback_host_answers_its_own_url(tmp_path: Path) -> None:
    """Issue 24, 10: ``serve --host 127.0.0.2`` answered 421 to its own printed URL."""
    from fastapi.testclient import TestClient

    app = _web(tmp_path / "s.sqlite", host="127.0.0.2", port=8123)
    with TestClient(app, base_url="http://127.0.0.2:8123") as client:
        assert client.get("/").status_code == 200
        assert client.get("/", headers={"host": "evil.example:8123"}).status_code == 421


def test_a_second_serve_on_the_same_study_stops_at_once_and_touches_nothing(tmp_path: Path) -> None:
    """Issue 24, 4: the second server used to mark the first one's running job ``interrupted``."""
    import socket
    import subprocess
    import sys

    from typer.testing import CliRunner

    from cleftscore.cli import app
    from cleftscore.study.db import open_study
    from cleftscore.web.jobs import ServerState

    db = tmp_path / "study.sqlite"
    with open_study(db) as study:
        state = ServerState(study.files / "web" / "server.sqlite")
        job = state.add_job(1, "asymmetry", "mouth", study.files / "web" / "uploads" / "job-1", ["a.jpg"])
        state.set_job(job, "running")
    lock = db.with_name(db.name + ".files") / "web" / "server.lock"
    # The first server: a process that holds the study's server lock, and its port.
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a+'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(lock)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            before = _files_digest(tmp_path)
            result = CliRunner().invoke(app, ["serve", "--db", str(db), "--port", str(port)])
    finally:
        holder.communicate("")
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and "another cleftscore serve" in result.output
    assert _files_digest(tmp_path) == before
    assert ServerState(db.with_name(db.name + ".files") / "web" / "server.sqlite").job(job).status == "running"


def test_a_full_disk_is_named_and_the_study_is_not_called_damaged(tmp_path: Path) -> None:
    from sqlalchemy import event

    from cleftscore.study.db import StudyCorruptError, StudyError, open_study
    from cleftscore.study.records import add_patient

    db = tmp_path / "study.sqlite"
    study = open_study(db)
    study.engine.dispose()

    @event.listens_for(study.engine, "connect")
    def _full(dbapi_conn: object, _record: object) -> None:
        # SQLite's own "database or disk is full", as when the disk has no room for one more page.
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]  # type: ignore[attr-defined]
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")  # type: ignore[attr-defined]

    with pytest.raises(StudyError) as caught:
        for k in range(200):
            add_patient(study, f"P{k:04d}")
    study.close()
    assert not isinstance(caught.value, StudyCorruptError)
    assert "disk holding it is full" in str(caught.value) and "backup" not in str(caught.value)
