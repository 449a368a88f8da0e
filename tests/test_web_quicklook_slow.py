"""The first hour in a real browser (Debian's chromium through Playwright), and the patient summary.

A study is seeded with one patient: a pre-op visit with two photos of the example portrait
carrying a synthetic cleft (planted by the benchmark's ``plant_cleft``) and a post-op visit
with the clean portrait twice. The browser then takes a quick look at one photo, reads the
visit, compare, patient, summary and error pages at 1,280 px (none may scroll sideways), and
every request it makes must go to the server. Screenshots are taken each run; with
``CLEFTSCORE_UPDATE_SCREENSHOT=1`` they replace ``docs/web_*.png``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from web_helpers import served, system_chromium

pytest.importorskip("fastapi")

pytestmark = pytest.mark.slow
DOCS = Path(__file__).resolve().parent.parent / "docs"
SIZE = 512


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, example_photo: Path) -> dict[str, list[Path]]:
    """Pre-op: the portrait with a planted cleft (two severities); post-op: the clean portrait twice; two more clefts."""
    from cleftscore.benchmarks.cleft_synth import plant_cleft
    from cleftscore.face import prepare_photo
    from cleftscore.io import write_png

    d = tmp_path_factory.mktemp("photos")
    face = prepare_photo(example_photo, size=1024).aligned
    made = {}
    for sev in (5, 4, 3, 2):
        p = plant_cleft(face.image, np.asarray(face.landmarks), severity=sev, side="right")
        made[sev] = write_png(d / f"cleft_s{sev}.png", p.image)
    clean = write_png(d / "clean.png", face.image)
    return {"pre": [made[5], made[4]], "post": [clean, example_photo], "one": [made[5]], "extra": [made[3], made[2]]}


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, list[Path]]) -> Path:
    from cleftscore.run.settings import PipelineSettings
    from cleftscore.study.db import open_study
    from cleftscore.study.ingest import score_into_visit
    from cleftscore.study.records import add_patient, add_visit

    db = tmp_path_factory.mktemp("study") / "study.sqlite"
    study = open_study(db, create=True)
    try:
        add_patient(study, "P001", cleft_type="lip", cleft_side="right")
        pre = add_visit(study, "P001", date=dt.date(2026, 1, 10), phase="pre-op").id
        post = add_visit(study, "P001", date=dt.date(2026, 5, 10), phase="post-op", procedure="lip repair").id
        settings = PipelineSettings(method="asymmetry", size=SIZE)
        for visit, files in ((pre, photos["pre"]), (post, photos["post"])):
            report = score_into_visit(study, visit, files, settings)
            assert all(line.status == "added" for line in report.lines), report.lines
    finally:
        study.close()
    return db


@pytest.fixture(scope="module")
def server(study_db: Path) -> Iterator[str]:
    from cleftscore.web.app import MethodChoice, create_app
    from cleftscore.web.settings import WebSettings

    app = create_app(WebSettings(db=study_db, port=0, size=SIZE), gan=MethodChoice("gan", False, "no weights here"))
    with served(app) as url:
        yield url


def _shot(page, name: str, tmp: Path) -> None:
    path = tmp / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("CLEFTSCORE_UPDATE_SCREENSHOT") == "1":
        shutil.copy(path, DOCS / name)


def _no_sideways_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, f"{page.url} is {width} px wide at a 1280 px window"


def test_first_hour_in_a_browser(server: str, photos: dict[str, list[Path]], tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=system_chromium(), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("request", lambda r: requests.append(r.url))
        page.set_default_timeout(180_000)

        # Quick look: one photo dropped in, its reading and panel shown, nothing stored.
        page.goto(server + "/")
        page.click("a[href='/quicklook']")
        page.set_input_files("#file-input", str(photos["one"][0]))
        page.click("#quicklook-button")
        page.wait_for_selector("#quicklook-result:not([hidden])")
        reading = page.inner_text("#ql-reading").lower()
        assert reading in ("within the normal range", "borderline", "outside the normal range")
        assert "normal faces" in page.inner_text("#ql-detail")
        assert page.eval_on_selector("#ql-panel", "img => img.naturalWidth") > 0
        _no_sideways_scroll(page)
        _shot(page, "web_quicklook.png", tmp_path)

        # The patient, its two visits: each photo's reading first, notes, the explanation.
        page.goto(server + "/patients/P001")
        page.click("a[href^='/visits/']")
        page.wait_for_selector("figure.viewer")
        assert page.locator("figure.viewer .reading").count() == 2
        page.locator("details.explain summary").first.click()
        assert "mirror image" in page.locator("details.explain p").first.inner_text()
        assert "Higher scores mean closer to normal" in page.content()
        assert "region of S" not in page.content() and "settings 0" not in page.content()
        _no_sideways_scroll(page)
        _shot(page, "web_visit_reading.png", tmp_path)

        # Two more photos: the job shows its percent while it runs, and every photo once scored.
        page.set_input_files("#file-input", [str(p) for p in photos["extra"]])
        page.select_option("#method", "asymmetry")
        page.click("#upload-button")
        page.wait_for_function(
            "() => /\\d+ %/.test((document.querySelector('.job .job-status') || {}).textContent || '')"
        )
        page.wait_for_function("() => document.querySelectorAll('figure.viewer').length === 4")
        page.goto(server + "/patients/P001")
        _no_sideways_scroll(page)
        page.click("#compare-form button")
        page.wait_for_selector("#change .change-value")
        change = page.inner_text("#change .change-value")
        assert "Score change" in change and "95 % CI" in change and "normal faces" in change
        _no_sideways_scroll(page)
        _shot(page, "web_compare.png", tmp_path)

        # The printable summary.
        page.goto(server + "/patients/P001")
        page.click("#summary-link")
        page.wait_for_selector("h1")
        text = page.content()
        assert "research tool, not a certified medical device" in text.lower() and "Change" in text
        assert "cleftscore normal adults" in text and page.locator("img").count() >= 3
        _no_sideways_scroll(page)
        _shot(page, "web_summary.png", tmp_path)

        # An unknown patient: an HTML page that leads back.
        page.goto(server + "/patients/NOBODY")
        assert "There is no patient NOBODY" in page.inner_text("#error-message")
        page.click("#back")
        page.wait_for_url(server + "/")

        icon = page.request.get(server + "/favicon.ico")
        assert icon.status == 200 and icon.headers["content-type"] == "image/png"
        page.goto(server + "/visits/1/report")
        assert page.locator("#report b.reading-outside").count() >= 1
        _no_sideways_scroll(page)
        browser.close()
    assert requests and all(u.startswith((server, "data:")) for u in requests), requests


def test_summary_from_the_command_line(study_db: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cleftscore.cli import app

    out = tmp_path / "P001.html"
    r = CliRunner().invoke(app, ["study", "summary", "P001", "--db", str(study_db), "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text(encoding="utf-8")
    assert "<style>" in text and "@page" in text and "research tool, not a certified medical device" in text.lower()
    # Nothing from the network ("http" alone can occur inside the base64 of an inlined picture).
    assert "Change" in text and "95 % CI" in text and "cleftscore normal adults" in text
    assert "http://" not in text and "https://" not in text and 'src="//' not in text
    pdf = CliRunner().invoke(app, ["study", "summary", "P001", "--db", str(study_db), "--out", str(tmp_path / "x.pdf")])
    assert pdf.exit_code == 1 and "no PDF library" in pdf.output


def test_quick_look_through_the_api_leaves_nothing_behind(
    study_db: Path, photos: dict[str, list[Path]], tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from cleftscore.web.app import MethodChoice, create_app
    from cleftscore.web.settings import WebSettings

    db = tmp_path / "copy.sqlite"
    app = create_app(WebSettings(db=db, size=SIZE, start_worker=False), gan=MethodChoice("gan", False, "none"))
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
        data = photos["one"][0].read_bytes()
        r = c.post("/api/quicklook", files={"file": ("face.png", data, "image/png")},
                   headers={"X-CSRF-Token": app.state.ctx.guard.csrf_token})  # fmt: skip
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["ok"] and out["reading"] and 0 <= out["percentile"] <= 100 and out["panel"].startswith("data:")
        assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == before
        assert c.get("/api/patients").json() == []
