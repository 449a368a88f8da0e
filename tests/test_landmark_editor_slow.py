"""The landmark editor in a real headless browser (Debian's chromium driven by Playwright; slow).

A photo is scored into a study; the editor page shows its aligned face and points; the browser
drags the patient's right mouth corner and saves; the score, the heat map and a nasolabial measure
change on the page. No request leaves the server. With ``CLEFTSCORE_UPDATE_SCREENSHOT=1`` the
screenshot replaces ``docs/landmark_editor.png``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from web_helpers import served, system_chromium

pytest.importorskip("fastapi")
pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _scored_study(tmp_path: Path, example_photo: Path) -> tuple[Path, int]:
    """A study with one photo scored by the mirror method; (database, photo id)."""
    from sqlalchemy import select

    from cleftscore.run.settings import PipelineSettings
    from cleftscore.study.db import open_study
    from cleftscore.study.ingest import score_into_visit
    from cleftscore.study.models import Photo
    from cleftscore.study.records import add_patient, add_visit

    db = tmp_path / "study.sqlite"
    study = open_study(db, create=True)
    add_patient(study, "P001")
    visit = add_visit(study, "P001", date=dt.date(2026, 1, 10), phase="pre-op")
    visit_id = visit if isinstance(visit, int) else visit.id
    score_into_visit(study, visit_id, [example_photo], PipelineSettings(method="asymmetry", size=256))
    with study.transaction(write=False) as s:
        photo_id = int(s.scalar(select(Photo.id)))
    study.close()
    return db, photo_id


@pytest.fixture()
def server(tmp_path: Path, example_photo: Path) -> Iterator[tuple[str, int]]:
    from cleftscore.web.app import MethodChoice, create_app
    from cleftscore.web.settings import WebSettings

    db, photo_id = _scored_study(tmp_path, example_photo)
    app = create_app(WebSettings(db=db, port=0, size=256), gan=MethodChoice("gan", False, "no weights in the tests"))
    with served(app) as url:
        yield url, photo_id


def test_dragging_a_point_changes_the_score_the_heat_map_and_a_measure(server: tuple[str, int], tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    base, photo_id = server
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=system_chromium(), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.set_default_timeout(120_000)
        page.goto(f"{base}/visits/1")
        page.click("a.landmarks-link")
        page.wait_for_url(f"{base}/photos/{photo_id}/landmarks")
        page.wait_for_selector('#lm-svg circle[data-point="48"]')
        page.wait_for_selector("#lm-score-1")
        score_before = page.inner_text("#lm-score-1")
        heat_before = page.get_attribute("#lm-heat-1", "src")
        measure = "#m-1-nl_cheilion_height_asym_icd .value"
        measure_before = page.inner_text(measure)
        point = page.locator('#lm-svg circle[data-point="48"]').bounding_box()
        assert point is not None
        x, y = point["x"] + point["width"] / 2, point["y"] + point["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x - 6, y + 10, steps=5)
        page.mouse.up()
        assert "1 point(s) changed" in page.inner_text("#lm-pending")
        page.select_option("#lm-add", "alar_crease_left")
        face = page.locator("#lm-svg").bounding_box()
        assert face is not None
        page.mouse.click(face["x"] + face["width"] * 0.58, face["y"] + face["height"] * 0.6)
        page.click("#lm-save")
        sync_api.expect(page.locator("#lm-status")).to_have_text(re.compile("^saved"), timeout=120_000)
        assert page.inner_text("#lm-score-1") != score_before
        assert page.get_attribute("#lm-heat-1", "src") != heat_before
        assert page.inner_text(measure) != measure_before
        assert page.inner_text("#m-1-landmarks_corrected_points .value") == "2.000"
        assert page.locator('#lm-svg circle[data-point="alar_crease_left"]').count() == 1
        shot = tmp_path / "landmark_editor.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert all(u.startswith(base) for u in requests), [u for u in requests if not u.startswith(base)]
    if os.environ.get("CLEFTSCORE_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, DOCS / "landmark_editor.png")


def test_the_editor_endpoints_check_what_they_are_sent(tmp_path: Path, example_photo: Path) -> None:
    from fastapi.testclient import TestClient

    from cleftscore.web.app import MethodChoice, create_app
    from cleftscore.web.settings import WebSettings

    db, photo_id = _scored_study(tmp_path, example_photo)
    app = create_app(WebSettings(db=db, size=256, start_worker=False), gan=MethodChoice("gan", False, "no weights"))
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        token = {"X-CSRF-Token": app.state.ctx.guard.csrf_token}
        state = client.get(f"/api/photos/{photo_id}/landmarks").json()
        assert len(state["points"]) == 68 and state["edits"] == 0 and state["scores"][0]["method"] == "asymmetry"
        assert "alar_crease_left" in state["hand_points"] and state["named"]["cheilion_right"] == 48
        png = client.get(state["image"])
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
        url = f"/api/photos/{photo_id}/landmarks"
        assert client.post(url, json={"points": {"48": [100, 200]}}).status_code == 403  # no CSRF token
        assert client.post(url, json={"points": {"nose": [1, 2]}}, headers=token).status_code == 400
        assert client.post(url, json={"points": {"48": [1]}}, headers=token).status_code == 400
        assert client.post(url, json={"points": {}}, headers=token).status_code == 400
        assert client.get("/api/photos/999/landmarks").status_code == 404
        assert (
            client.post("/api/photos/999/landmarks", json={"points": {"48": [1, 2]}}, headers=token).status_code == 404
        )
        x, y = state["points"]["48"]
        saved = client.post(url, json={"points": {"48": [x - 5, y + 5]}}, headers=token).json()
        assert saved["edits"] == 1 and saved["lines"][0]["status"] == "updated"
        assert saved["scores"][0]["score"] != state["scores"][0]["score"]
        assert saved["scores"][0]["measures"]["landmarks_corrected_points"] == 1
