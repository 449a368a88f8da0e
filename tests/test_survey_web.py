"""Surveys in the web app: a rater token opens its own rating page and nothing else.

The server runs as one reachable from other machines (an access token is set), where the
difference matters: the organiser's pages need the access token; raters have only their link.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest
from PIL import Image

from survey_helpers import SECRET_NAME, make_study

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.routing import Mount  # noqa: E402

from cleftscore.web.app import MethodChoice, create_app  # noqa: E402
from cleftscore.web.security import hash_token  # noqa: E402
from cleftscore.web.settings import WebSettings  # noqa: E402

BASE = "http://127.0.0.1:8765"
ACCESS = "the-organisers-access-token-0123456789"
NO_GAN = MethodChoice("gan", False, "test")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, object, dict[str, str]]]:
    """Survey 1 (every photo, raters A and B) and survey 2 (P002's photos, rater C), served with an access token."""
    folder = tmp_path_factory.mktemp("web_survey")
    make_study(folder).close()
    settings = WebSettings(db=folder / "s.sqlite", host="0.0.0.0", token_hash=hash_token(ACCESS), start_worker=False)
    app = create_app(settings, gan=NO_GAN)
    with TestClient(app, base_url=BASE) as client:
        auth = {"Authorization": f"Bearer {ACCESS}", "X-CSRF-Token": app.state.ctx.guard.csrf_token}
        tokens = {}
        for title, patients, codes in (("Panel one", "", "A B"), ("Panel two", "P002", "C")):
            r = client.post("/api/surveys", json={"title": title, "patients": patients, "crop": "whole", "seed": 5,
                                                  "repeat_fraction": 0.25}, headers=auth)  # fmt: skip
            assert r.status_code == 201, r.text
            r = client.post(f"/api/surveys/{r.json()['id']}/raters", json={"codes": codes}, headers=auth)
            assert r.status_code == 201, r.text
            for rater in r.json()["raters"]:
                assert rater["link"].startswith(f"{BASE}/survey/r/")
                tokens[rater["code"]] = rater["link"].rsplit("/", 1)[1]
        yield client, app, tokens


def _concrete(path: str) -> str:
    values = {"code": "P001", "rel": "photos/00/" + "0" * 64 + ".png", "name": "ratings"}
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values.get(m.group(1), "1"), path)


def _every_route(app) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        if isinstance(route, Mount):
            out.append(("GET", f"{route.path}/app.css"))
            continue
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            out.append((method, _concrete(route.path)))
    return out


def test_a_rater_token_opens_no_other_route(served) -> None:
    client, app, tokens = served
    routes = _every_route(app)
    assert len(routes) > 20 and ("GET", "/surveys/1/report") in routes
    token = tokens["A"]
    client.cookies.clear()
    for method, path in routes:
        anonymous = client.request(method, path, follow_redirects=False)
        tries = (
            client.request(method, path, headers={"Authorization": f"Bearer {token}"}, follow_redirects=False),
            client.request(method, path, params={"token": token}, follow_redirects=False),
        )
        client.cookies.set("cleftscore_session", token)
        tries += (client.request(method, path, follow_redirects=False),)
        client.cookies.clear()
        for r in tries:
            assert r.status_code == anonymous.status_code, (method, path, r.status_code, anonymous.status_code)
            if not (path.startswith("/static/") or path == "/login"):
                assert r.status_code in (401, 303), (method, path, r.status_code)
                assert r.status_code == 401 or r.headers["location"] == "/login"
    # The organiser's token does open them (the check above is not vacuous).
    assert client.get("/surveys/1/report", headers={"Authorization": f"Bearer {ACCESS}"}).status_code == 200


def test_each_token_opens_its_own_survey_only(served) -> None:
    client, _app, tokens = served
    page_a = client.get(f"/survey/r/{tokens['A']}")
    page_c = client.get(f"/survey/r/{tokens['C']}")
    assert page_a.status_code == page_c.status_code == 200
    assert "Panel one" in page_a.text and "Panel two" not in page_a.text
    assert "Panel two" in page_c.text and "Panel one" not in page_c.text
    assert "Photo 1 of 8" in page_a.text and "Photo 1 of 4" in page_c.text  # 6 + 2 repeats; 3 + 1
    assert client.get(f"/survey/r/{tokens['C']}/photo/5.png").status_code == 404  # beyond its own order
    for bad in ("x" * 43, tokens["A"][:-2], "x"):
        assert client.get(f"/survey/r/{bad}").status_code == 404
    assert client.get(f"/survey/r/{tokens['A']}/x").status_code == 404
    # A path that climbs out of the rater prefix is the organiser's route again, closed to raters.
    up = client.get(f"/survey/r/{tokens['A']}/../../../surveys/1/report", follow_redirects=False)
    assert up.status_code == 303 and up.headers["location"] == "/login"


def test_rater_page_and_photos_tell_nothing_about_the_patient(served) -> None:
    client, _app, tokens = served
    page = client.get(f"/survey/r/{tokens['B']}")
    for secret in ("P001", "P002", SECRET_NAME, ".jpg", "heat", "overlay", "/files/"):
        assert secret not in page.text
    assert not re.search(r"\b\d+\.\d{3}\b", page.text)  # no score printed
    for n in range(1, 9):
        r = client.get(f"/survey/r/{tokens['B']}/photo/{n}.png")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert "content-disposition" not in r.headers and r.headers["cache-control"] == "no-store"
        img = Image.open(io.BytesIO(r.content))
        img.load()
        assert not img.info and not img.getexif()
        assert SECRET_NAME.encode() not in r.content and b"Jane" not in r.content
    assert (
        page.headers["referrer-policy"] == "no-referrer"
        and "default-src 'self'" in page.headers["content-security-policy"]
    )


def test_rater_posts_need_their_form_value_and_this_host(served) -> None:
    client, app, tokens = served
    token = tokens["B"]
    page = client.get(f"/survey/r/{token}").text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    assert client.post(f"/survey/r/{token}/rate", data={"position": 1, "rating": 3}).status_code == 403
    assert (
        client.post(f"/survey/r/{token}/rate", data={"position": 1, "rating": 3, "csrf": "0" * 64}).status_code == 403
    )
    other = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get(f"/survey/r/{tokens['A']}").text).group(1)
    assert client.post(f"/survey/r/{token}/rate", data={"position": 1, "rating": 3, "csrf": other}).status_code == 403
    r = client.post(f"/survey/r/{token}/rate", data={"position": 1, "rating": 3, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/survey/r/{token}"
    assert "Photo 2 of 8" in client.get(f"/survey/r/{token}").text
    assert client.post(f"/survey/r/{token}/rate", data={"position": 1, "rating": 9, "csrf": csrf}).status_code == 409
    assert client.get(f"/survey/r/{token}", headers={"host": "evil.example"}).status_code == 421
    cross = client.post(f"/survey/r/{token}/rate", data={"position": 2, "rating": 3, "csrf": csrf},
                        headers={"origin": "http://evil.example"})  # fmt: skip
    assert cross.status_code == 403
    assert client.post(f"/survey/r/{token}/submit", data={"csrf": csrf}).status_code == 409  # 6 photos still open


def test_organiser_pages_need_the_access_token(served) -> None:
    client, _app, _tokens = served
    client.cookies.clear()
    assert client.get("/surveys", follow_redirects=False).headers["location"] == "/login"
    ok = {"Authorization": f"Bearer {ACCESS}"}
    assert "Panel one" in client.get("/surveys", headers=ok).text
    detail = client.get("/surveys/1", headers=ok).text
    assert "A" in detail and "invite-form" in detail
    csv = client.get("/surveys/1/ratings.csv", headers=ok)
    assert csv.status_code == 200 and csv.text.lstrip("\ufeff").startswith("file,rating")


def test_rater_page_links_nowhere_else(served) -> None:
    client, _app, tokens = served
    page = client.get(f"/survey/r/{tokens['A']}").text
    links = re.findall(r'(?:href|src|action)="([^"]+)"', page)
    assert links and all(
        u.startswith((f"/survey/r/{tokens['A']}", "/static/", "?at=", "/favicon.ico")) for u in links
    ), links


def test_organiser_closes_a_survey_and_its_raters_can_change_nothing(served) -> None:
    client, app, _tokens = served
    auth = {"Authorization": f"Bearer {ACCESS}", "X-CSRF-Token": app.state.ctx.guard.csrf_token}
    sid = client.post("/api/surveys", json={"title": "To close", "crop": "whole"}, headers=auth).json()["id"]
    link = client.post(f"/api/surveys/{sid}/raters", json={"codes": "Z1"}, headers=auth).json()["raters"][0]["link"]
    token = link.rsplit("/", 1)[1]
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get(f"/survey/r/{token}").text).group(1)
    assert client.post(f"/api/surveys/{sid}/close", headers={"Authorization": f"Bearer {ACCESS}"}).status_code == 403
    assert client.post(f"/api/surveys/{sid}/close", headers=auth).status_code == 200
    assert client.post(f"/survey/r/{token}/rate", data={"position": 1, "rating": 3, "csrf": csrf}).status_code == 409
    assert "closed" in client.get(f"/survey/r/{token}").text
    assert "close-survey" not in client.get(f"/surveys/{sid}", headers=auth).text
