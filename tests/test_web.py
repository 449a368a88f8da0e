"""`cleftscore serve`: pages, jobs and the safety guards, through FastAPI's in-process client.

Every request is made with Host 127.0.0.1 (or a deliberately foreign one); nothing binds a
socket here. Photos are scored at 128 px with the asymmetry method, so a job takes seconds.
"""

from __future__ import annotations

import io
import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from cleftscore.web.app import MethodChoice, WebConfigError, create_app  # noqa: E402
from cleftscore.web.jobs import ServerState  # noqa: E402
from cleftscore.web.security import hash_token  # noqa: E402
from cleftscore.web.settings import WebSettings  # noqa: E402
from cleftscore.web.tokens import TOKEN_KEY, ensure_token  # noqa: E402
from cleftscore.web.uploads import UploadError, check_photo  # noqa: E402

BASE = "http://127.0.0.1:8765"
NO_GAN = MethodChoice("gan", False, "the GAN method needs model weights that are not on this machine (test)")
FACE_A = "tiny_128px_portrait_uniform.jpg"
FACE_B = "exif_orientation6_tiny_portrait.jpg"


def _app(db: Path, **kw: object):
    return create_app(WebSettings(db=db, size=128, **kw), gan=NO_GAN)  # type: ignore[arg-type]


def _h(app) -> dict[str, str]:
    return {"X-CSRF-Token": app.state.ctx.guard.csrf_token}


def _patient_and_visit(
    client: TestClient, app, code: str = "P001", date: str = "2026-01-10", phase: str = "pre-op"
) -> int:
    if client.get(f"/api/patients/{code}").status_code == 404:
        assert client.post("/api/patients", json={"code": code}, headers=_h(app)).status_code == 201
    r = client.post(f"/api/patients/{code}/visits", json={"date": date, "phase": phase}, headers=_h(app))
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _files(faces: Path, *names: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (n, (faces / n).read_bytes(), "image/jpeg")) for n in names]


def _wait(client: TestClient, job_id: int) -> dict:
    """Follow the job's Server-Sent Events until it finishes; return the last state."""
    last: dict = {}
    quiet = 0
    with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith(":"):  # a keep-alive every 15 s without change: bounded at 10 min
                quiet += 1
                assert quiet < 40, f"job {job_id} made no progress for 10 minutes: {last}"
            if line.startswith("data: "):
                last = json.loads(line[6:])
                if last["finished"]:
                    break
    return last


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return tmp_path / "study.sqlite"


@pytest.fixture()
def idle(db: Path) -> Iterator[tuple[TestClient, object]]:
    """An app whose worker is not started: jobs stay queued."""
    app = _app(db, start_worker=False)
    with TestClient(app, base_url=BASE) as client:
        yield client, app


@pytest.fixture(scope="module")
def scored(
    tmp_path_factory: pytest.TempPathFactory, local_faces: Path
) -> Iterator[tuple[TestClient, object, list[int]]]:
    """A running app with patient P001: a pre-op visit (two photos) and a post-op visit (one), all scored."""
    app = _app(tmp_path_factory.mktemp("web") / "study.sqlite")
    with TestClient(app, base_url=BASE) as client:
        pre = _patient_and_visit(client, app)
        post = _patient_and_visit(client, app, date="2026-04-10", phase="post-op")
        jobs = []
        for visit, names in ((pre, (FACE_A, FACE_B)), (post, ("grayscale_tiny_128px_portrait.jpg",))):
            r = client.post(f"/api/visits/{visit}/jobs", files=_files(local_faces, *names), data={"method": "asymmetry", "roi": "mouth"},
                            headers=_h(app))  # fmt: skip
            assert r.status_code == 202, r.text
            jobs.append(r.json()["id"])
        for j in jobs:
            assert _wait(client, j)["status"] == "done"
        yield client, app, [pre, post]


# ------------------------------------------------------------------------------ pages and jobs


def test_uploaded_photos_are_scored_into_the_visit_and_shown(scored) -> None:
    client, app, (pre, post) = scored
    visit = client.get(f"/api/visits/{pre}").json()
    assert [p["name"] for p in visit["photo_list"]] == [FACE_A, FACE_B]
    scores = [p["scores"][0] for p in visit["photo_list"]]
    assert all(s["method"] == "asymmetry" and s["roi"] == "mouth" for s in scores)
    assert {"aligned.png", "normalized.png", "overlay.png"} <= set(scores[0]["pictures"])
    page = client.get(f"/visits/{pre}").text
    for s in scores:
        assert f"score = {s['score']:.3f}" in page
    # The asymmetry method's face-referenced score names its own region, not the --roi of S.
    assert "asymmetry, region upper-lip skin" in page
    assert 'class="opacity" type="range"' in page and "Higher scores mean closer to normal" in page
    assert "GAN method not offered: the GAN method needs model weights" in page and 'value="gan"' not in page
    pic = client.get("/files/" + scores[0]["pictures"]["overlay.png"])
    assert pic.status_code == 200 and Image.open(io.BytesIO(pic.content)).size == (128, 128)


def test_csv_report_comparison_and_patient_pages(scored) -> None:
    client, app, (pre, post) = scored
    csv = client.get(f"/visits/{pre}/scores.csv")
    assert csv.status_code == 200 and "attachment" in csv.headers["content-disposition"]
    lines = csv.content.decode("utf-8-sig").strip().splitlines()
    assert lines[0].startswith("patient,visit_id,date,phase,photo_id,file,method,roi,score") and len(lines) == 3
    report = client.get(f"/visits/{pre}/report").text
    assert FACE_A in report and FACE_B in report and "Download CSV" in report
    compare = client.get(f"/compare?a={pre}&b={post}").text
    assert 'id="column-1"' in compare and 'id="column-2"' in compare and "grayscale_tiny_128px_portrait.jpg" in compare
    patient = client.get("/patients/P001").text
    assert f"/visits/{post}" in patient and "timeline.png" in patient
    # The post-op visit's change: these 128-px test faces fail the photo-quality gate, so the page says the
    # change leaves them out (and names no command-line option); a change row would say its CI.
    assert "failed the quality gate" in patient or "no CI is possible" in patient or "to +" in patient
    assert "--include-failed-quality" not in patient
    png = client.get("/patients/P001/timeline.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/patients/P001/timeline.png").content == png.content and len(app.state.ctx.timelines) == 1
    _patient_and_visit(client, app, date="2026-09-01", phase="follow-up")  # the study changed: drawn again
    assert client.get("/patients/P001/timeline.png").status_code == 200 and len(app.state.ctx.timelines) == 2
    assert "P001" in client.get("/?q=p00").text and "no patient code contains" in client.get("/?q=zz").text


def test_every_page_works_with_outbound_connections_blocked(scored, monkeypatch: pytest.MonkeyPatch) -> None:
    client, app, (pre, post) = scored
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost") and self.family != socket.AF_UNIX:
            attempts.append(address)
            raise OSError(f"test guard: outbound connection to {address} blocked")
        real_connect(self, address)  # type: ignore[arg-type]

    def guarded_getaddrinfo(host: object, *args: object, **kw: object) -> list:
        attempts.append(host)
        raise OSError(f"test guard: name lookup of {host} blocked")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    pics = client.get(f"/api/visits/{pre}").json()["photo_list"][0]["scores"][0]["pictures"]
    urls = ["/", "/?q=P", "/patients/P001", "/patients/P001/timeline.png", f"/visits/{pre}", f"/visits/{post}",
            f"/compare?a={pre}&b={post}", f"/visits/{pre}/report", f"/visits/{pre}/scores.csv", "/static/app.js",
            "/static/app.css", "/api/patients", f"/api/visits/{pre}", "/api/methods", "/openapi.json"] + [f"/files/{p}" for p in pics.values()]  # fmt: skip
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200, (url, r.status_code)
        if r.headers["content-type"].startswith(("text/html", "text/javascript", "application/javascript", "text/css")):
            assert "http://" not in r.text and "https://" not in r.text and "//cdn" not in r.text, url
        assert "default-src 'self'" in r.headers["content-security-policy"]
    assert attempts == []


def test_restart_keeps_finished_results_and_marks_unfinished_jobs_interrupted(db: Path, local_faces: Path) -> None:
    first = _app(db)
    with TestClient(first, base_url=BASE) as client:
        visit = _patient_and_visit(client, first)
        done = client.post(f"/api/visits/{visit}/jobs", files=_files(local_faces, FACE_A), headers=_h(first)).json()[
            "id"
        ]
        assert _wait(client, done)["photos"][0]["status"] == "scored"
    stopped = _app(db, start_worker=False)  # a server that dies before it scores its job
    with TestClient(stopped, base_url=BASE) as client:
        pending = client.post(
            f"/api/visits/{visit}/jobs", files=_files(local_faces, FACE_B), headers=_h(stopped)
        ).json()["id"]
        assert client.get(f"/api/jobs/{pending}").json()["status"] == "queued"
    again = _app(db)
    with TestClient(again, base_url=BASE) as client:
        kept = client.get(f"/api/jobs/{done}").json()
        assert kept["status"] == "done" and kept["photos"][0]["score"] is not None
        job = client.get(f"/api/jobs/{pending}").json()
        assert job["status"] == "interrupted" and job["rerunnable"] and job["photos"][0]["status"] == "interrupted"
        assert "re-run" in client.get(f"/visits/{visit}").text.lower()
        assert client.post(f"/api/jobs/{pending}/rerun", headers=_h(again)).status_code == 200
        final = _wait(client, pending)
        assert final["status"] == "done" and final["photos"][0]["status"] == "scored"
        names = [p["name"] for p in client.get(f"/api/visits/{visit}").json()["photo_list"]]
        assert names == [FACE_A, FACE_B]
        assert client.post(f"/api/jobs/{pending}/rerun", headers=_h(again)).status_code == 409


def test_a_cancelled_job_keeps_no_upload_and_cannot_be_run_again(idle, local_faces: Path) -> None:
    client, app = idle
    visit = _patient_and_visit(client, app)
    job = client.post(f"/api/visits/{visit}/jobs", files=_files(local_faces, FACE_A, FACE_B), headers=_h(app)).json()
    cancelled = client.post(f"/api/jobs/{job['id']}/cancel", headers=_h(app)).json()
    assert cancelled["status"] == "cancelled" and {p["status"] for p in cancelled["photos"]} == {"cancelled"}
    assert client.post(f"/api/jobs/{job['id']}/cancel", headers=_h(app)).status_code == 409
    # The uploads (originals, EXIF and all) are deleted when a job ends in any state, so nothing is left to re-run.
    assert not app.state.ctx.jobs.state.folder(job["id"]).exists()
    assert client.post(f"/api/jobs/{job['id']}/rerun", headers=_h(app)).status_code == 409
    assert client.get(f"/api/visits/{visit}").json()["photos"] == 0  # nothing scored while the worker is off


def test_gan_is_refused_with_the_reason_when_its_weights_are_missing(idle, local_faces: Path) -> None:
    client, app = idle
    visit = _patient_and_visit(client, app)
    r = client.post(
        f"/api/visits/{visit}/jobs", files=_files(local_faces, FACE_A), data={"method": "gan"}, headers=_h(app)
    )
    assert r.status_code == 409 and "needs model weights" in r.json()["detail"] and "asymmetry" in r.json()["detail"]
    assert client.get("/api/methods").json()[1] == {"name": "gan", "available": False, "reason": NO_GAN.reason}


# ------------------------------------------------------------------------------ safety


def test_a_public_host_without_a_token_refuses_to_start(db: Path) -> None:
    with pytest.raises(WebConfigError, match="needs an access token"):
        create_app(WebSettings(db=db, host="0.0.0.0"), gan=NO_GAN)
    with pytest.raises(WebConfigError):
        create_app(WebSettings(db=db, host="192.168.1.20"), gan=NO_GAN)


def test_the_token_is_made_once_and_stored_only_as_its_hash(tmp_path: Path) -> None:
    state = ServerState(tmp_path / "server.sqlite")
    first = ensure_token(state)
    assert first.new is not None and first.token_hash == hash_token(first.new)
    again = ensure_token(state)
    assert again.new is None and again.token_hash == first.token_hash
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert first.new.encode() not in raw and state.get_meta(TOKEN_KEY) == first.token_hash
    renewed = ensure_token(state, renew=True)
    assert renewed.new is not None and renewed.token_hash != first.token_hash


def test_a_public_host_asks_every_request_for_the_token(db: Path) -> None:
    token = "correct horse battery staple"
    app = create_app(
        WebSettings(db=db, host="0.0.0.0", token_hash=hash_token(token), extra_hosts=("lab-pc",), start_worker=False),
        gan=NO_GAN,
    )
    with TestClient(app, base_url="http://lab-pc:8765") as client:
        assert client.get("/api/patients").status_code == 401
        r = client.get("/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert client.post("/login", data={"token": "guess"}).status_code == 401
        assert client.get("/api/patients", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.post("/login", data={"token": token}).status_code == 200  # redirected to the patients page
        assert client.get("/").status_code == 200 and client.get("/api/patients").status_code == 200
        assert client.get("/", headers={"host": "evil.example"}).status_code == 421


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example", "", "localhost.:8765"])
def test_a_foreign_host_header_is_refused(idle, host: str) -> None:
    client, _ = idle
    r = client.get("/", headers={"host": host})
    assert r.status_code == 421 and "Host header" in r.text


def test_own_host_names_are_answered(idle) -> None:
    client, _ = idle
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "127.0.0.1"):
        assert client.get("/api/methods", headers={"host": host}).status_code == 200, host


def test_a_request_from_another_site_is_refused(idle) -> None:
    client, app = idle
    r = client.post("/api/patients", json={"code": "P009"}, headers={**_h(app), "Origin": "http://evil.example"})
    assert r.status_code == 403
    assert client.get("/api/patients").json() == []


def test_every_state_changing_request_needs_the_csrf_token(idle, local_faces: Path) -> None:
    client, app = idle
    visit = _patient_and_visit(client, app)
    job = client.post(f"/api/visits/{visit}/jobs", files=_files(local_faces, FACE_A), headers=_h(app)).json()["id"]
    schema = client.get("/openapi.json").json()
    posts = [p for p, ops in schema["paths"].items() for m in ops if m in ("post", "put", "patch", "delete")]
    assert len(posts) >= 5
    for path in posts:
        url = path.replace("{code}", "P001").replace("{visit_id}", str(visit)).replace("{job_id}", str(job))
        for headers in ({}, {"X-CSRF-Token": "wrong"}):
            r = client.post(url, json={"code": "P002", "date": "2026-01-01", "phase": "pre-op"}, headers=headers)
            assert r.status_code == 403 and "CSRF" in r.json()["detail"], (url, r.status_code)
    assert client.delete("/api/patients/P001").status_code == 403
    assert [p["code"] for p in client.get("/api/patients").json()] == ["P001"]
    assert len(client.get(f"/api/visits/{visit}/jobs").json()) == 1
    assert client.get(f"/api/jobs/{job}").json()["status"] == "queued"


def _stored_anything(db: Path) -> tuple[int, list[Path]]:
    uploads = db.with_name(db.name + ".files") / "web" / "uploads"
    with sqlite3.connect(db.with_name(db.name + ".files") / "web" / "server.sqlite") as con:
        jobs = con.execute("SELECT count(*) FROM jobs").fetchone()[0]
    return jobs, sorted(uploads.rglob("*")) if uploads.exists() else []


def test_an_oversized_upload_gets_a_clear_message_and_nothing_is_stored(db: Path, local_faces: Path) -> None:
    big = local_faces / FACE_A
    app = _app(db, start_worker=False, max_file_bytes=big.stat().st_size - 1, max_files=2)
    with TestClient(app, base_url=BASE) as client:
        visit = _patient_and_visit(client, app)
        r = client.post(f"/api/visits/{visit}/jobs", files=_files(local_faces, FACE_A), headers=_h(app))
        assert r.status_code == 413
        assert (
            "over the limit" in r.json()["detail"][0]
            and FACE_A in r.json()["detail"][0]
            and "Nothing was stored" in r.json()["detail"][-1]
        )
        r = client.post(f"/api/visits/{visit}/jobs", files=_files(local_faces, FACE_B, FACE_B, FACE_B), headers=_h(app))
        assert r.status_code == 413  # three photos, two allowed (or the body limit before it)
        assert _stored_anything(db) == (0, [])
        assert client.get(f"/api/visits/{visit}").json()["photos"] == 0


def test_too_many_pixels_and_files_that_only_pretend_to_be_photos(db: Path, local_faces: Path) -> None:
    app = _app(db, start_worker=False, max_pixels=100 * 100)
    with TestClient(app, base_url=BASE) as client:
        visit = _patient_and_visit(client, app)
        r = client.post(f"/api/visits/{visit}/jobs", files=_files(local_faces, FACE_A), headers=_h(app))
        assert r.status_code == 413 and "megapixels is over the limit" in r.json()["detail"][0]
        fake = [("files", ("face.jpg", b"#!/bin/sh\necho not a photo\n", "image/jpeg"))]
        r = client.post(f"/api/visits/{visit}/jobs", files=fake, headers=_h(app))
        assert r.status_code == 415 and "not an image" in r.json()["detail"][0]
        assert _stored_anything(db) == (0, [])


def test_uploads_are_recognised_by_content_not_by_name(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buf, format="PNG")
    ok = check_photo("../../etc/holiday photo.JPG", buf.getvalue(), max_bytes=10**6, max_pixels=10**6)
    assert (ok.name, ok.format, ok.width, ok.height) == ("holiday_photo.png", "PNG", 40, 30)
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, format="GIF")
    with pytest.raises(UploadError, match="a GIF image"):
        check_photo("x.jpg", gif.getvalue(), max_bytes=10**6, max_pixels=10**6)
    with pytest.raises(UploadError, match="damaged"):
        check_photo("cut.png", buf.getvalue()[:60], max_bytes=10**6, max_pixels=10**6)
    with pytest.raises(UploadError, match="empty"):
        check_photo("none.jpg", b"", max_bytes=10**6, max_pixels=10**6)


def test_serve_on_a_public_host_warns_and_prints_the_token_once(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from cleftscore.cli import app as cli

    started: list[dict] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: started.append({"host": self.config.host}))
    runner = CliRunner()
    first = runner.invoke(cli, ["serve", "--db", str(db), "--host", "0.0.0.0", "--port", "0"])
    assert first.exit_code == 0, first.output
    assert "warning" in first.output and "Access token (shown this once" in first.output
    token = first.output.split("stored only as a hash): ", 1)[1].split()[0]
    second = runner.invoke(cli, ["serve", "--db", str(db), "--host", "0.0.0.0", "--port", "0"])
    assert token not in second.output and "Access token: the one printed" in second.output
    local = runner.invoke(cli, ["serve", "--db", str(db)])
    assert "warning" not in local.output and "http://127.0.0.1:8765/" in local.output
    assert [s["host"] for s in started] == ["0.0.0.0", "0.0.0.0", "127.0.0.1"]


def test_a_chunked_upload_past_the_limit_is_stopped_while_it_arrives(db: Path) -> None:
    app = _app(db, start_worker=False, max_file_bytes=10_000, max_files=1)
    with TestClient(app, base_url=BASE) as client:
        visit = _patient_and_visit(client, app)
        sent: list[int] = []

        def body() -> Iterator[bytes]:  # no Content-Length: the size is only known by counting
            yield b'--XyZ\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            for _ in range(100):
                sent.append(1)
                yield b"\xff" * 65536
            yield b"\r\n--XyZ--\r\n"

        r = client.post(
            f"/api/visits/{visit}/jobs",
            content=body(),
            headers={**_h(app), "Content-Type": "multipart/form-data; boundary=XyZ"},
        )
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert (
            r.status_code == 413
            and "over the limit" in r.json()["detail"]
            and "nothing was stored" in r.json()["detail"]
        )
        assert _stored_anything(db) == (0, [])


def test_a_server_stopping_mid_job_leaves_every_photo_scored_or_interrupted(db: Path, local_faces: Path) -> None:
    app = _app(db)
    with TestClient(app, base_url=BASE) as client:
        visit = _patient_and_visit(client, app)
        job = client.post(
            f"/api/visits/{visit}/jobs", files=_files(local_faces, FACE_A, FACE_B), headers=_h(app)
        ).json()["id"]
    # the server has stopped (lifespan ended) at whatever point the job had reached
    state = ServerState(db.with_name(db.name + ".files") / "web" / "server.sqlite")
    after = state.job(job)
    assert after is not None
    photos = [p.status for p in after.photos]
    assert set(photos) <= {"scored", "interrupted"}
    assert after.status == ("done" if photos == ["scored", "scored"] else "interrupted")
    again = _app(db, start_worker=False)
    with TestClient(again, base_url=BASE) as client:
        assert client.get(f"/api/visits/{visit}").json()["photos"] == photos.count("scored")
        assert client.get(f"/api/jobs/{job}").json()["rerunnable"] == ("interrupted" in photos)


@pytest.mark.slow
def test_gan_jobs_run_when_the_generator_is_there(db: Path, local_faces: Path, tiny_generator_file: Path) -> None:
    from cleftscore.normalize.gan import GanSettings
    from cleftscore.web.app import gan_availability

    gan = GanSettings(generator=str(tiny_generator_file), loss="mse", device="cpu", steps=2, adapt_steps=1, batch=1)
    assert gan_availability(gan).available
    assert not gan_availability(GanSettings(generator=str(db.parent / "missing.pt"), loss="mse")).available
    app = create_app(WebSettings(db=db, gan=gan))
    with TestClient(app, base_url=BASE) as client:
        visit = _patient_and_visit(client, app)
        assert 'value="gan"' in client.get(f"/visits/{visit}").text
        job = client.post(
            f"/api/visits/{visit}/jobs", files=_files(local_faces, FACE_A), data={"method": "gan"}, headers=_h(app)
        ).json()
        final = _wait(client, job["id"])
        assert final["status"] == "done" and final["photos"][0]["status"] == "scored", final
        (photo,) = client.get(f"/api/visits/{visit}").json()["photo_list"]
        assert photo["scores"][0]["method"] == "gan"


def test_a_photo_without_a_face_fails_with_its_own_name_and_the_rest_is_scored(db: Path, local_faces: Path) -> None:
    from PIL import ImageDraw

    buf = io.BytesIO()
    blank = Image.new("RGB", (160, 160), (90, 140, 200))
    ImageDraw.Draw(blank).rectangle((40, 40, 120, 120), fill=(250, 250, 250))
    blank.save(buf, format="JPEG")
    app = _app(db)
    with TestClient(app, base_url=BASE) as client:
        visit = _patient_and_visit(client, app)
        files = [("files", ("wall.jpg", buf.getvalue(), "image/jpeg"))] + _files(local_faces, FACE_A)
        final = _wait(client, client.post(f"/api/visits/{visit}/jobs", files=files, headers=_h(app)).json()["id"])
        wall, face = final["photos"]
        assert final["status"] == "done" and "1 photo(s) failed" in final["message"]
        assert (
            wall["status"] == "failed" and wall["message"].startswith("wall.jpg: ") and "uploads" not in wall["message"]
        )
        assert face["status"] == "scored"
        assert "wall.jpg" in client.get(f"/visits/{visit}").text


def test_a_patient_with_twenty_visits_lists_them_all_in_date_order(idle) -> None:
    client, app = idle
    for k in range(20):
        _patient_and_visit(
            client, app, date=f"2026-{1 + k // 2:02d}-{1 + 14 * (k % 2):02d}", phase="pre-op" if k < 2 else "follow-up"
        )
    page = client.get("/patients/P001").text
    rows = page.split('<table id="visits">', 1)[1].split("</table>", 1)[0].count('<tr><td><a href="/visits/')
    assert rows == 20
    dates = [v["date"] for v in client.get("/api/patients/P001/visits").json()]
    assert dates == sorted(dates) and len(dates) == 20
    assert page.count('<option value="') >= 40  # both pickers of the comparison offer every visit


def test_the_shipped_pages_and_assets_name_no_other_server() -> None:
    import re

    import cleftscore.web

    root = Path(cleftscore.web.__file__).parent
    assets = sorted((root / "templates").glob("*.html")) + sorted((root / "static").iterdir())
    assert len(assets) >= 8
    for f in assets:
        text = f.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), f"{f.name} names another server"
        assert "@import" not in text and "fonts.googleapis" not in text
