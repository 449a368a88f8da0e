"""A rating survey end to end in a real headless browser (Debian's chromium driven by Playwright).

Four sample portraits are scored with the asymmetry method into a study; in the browser the
organiser makes a survey and invites two raters, each rater opens their own link in a fresh
browser (no cookies), rates every photo (the repeat included) and submits; the organiser's report
then shows the panel's ICCs and the agreement of the machine score with the panel mean. Every
request the browsers make goes to the server only. Screenshots of the rater page and the report
are taken each run; with ``CLEFTSCORE_UPDATE_SCREENSHOT=1`` they replace ``docs/survey_rater.png``
and ``docs/survey_report.png``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from web_helpers import served, system_chromium

pytest.importorskip("fastapi")

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parent.parent / "docs"
FACES = ("tiny_128px_portrait_uniform.jpg", "exif_orientation6_tiny_portrait.jpg", "grayscale_tiny_128px_portrait.jpg")


@pytest.fixture()
def server(tmp_path: Path, local_faces: Path, example_photo: Path) -> Iterator[tuple[str, Path]]:
    """A study with patient P001's pre-op visit of four scored photos, served on a free port."""
    from cleftscore.run.settings import PipelineSettings
    from cleftscore.study.db import open_study
    from cleftscore.study.ingest import score_into_visit
    from cleftscore.study.records import add_patient, add_visit
    from cleftscore.web.app import MethodChoice, create_app
    from cleftscore.web.settings import WebSettings

    db = tmp_path / "study.sqlite"
    with open_study(db) as study:
        add_patient(study, "P001")
        visit = add_visit(study, "P001", date=dt.date(2026, 1, 10), phase="pre-op").id
        photos = [local_faces / n for n in FACES] + [example_photo]
        report = score_into_visit(study, visit, photos, PipelineSettings(method="asymmetry", size=128))
        assert report.count("added") == 4, [(ln.file, ln.message) for ln in report.lines]
    app = create_app(WebSettings(db=db, port=0, size=128), gan=MethodChoice("gan", False, "no weights in the tests"))
    with served(app) as url:
        yield url, db


def _intended(db: Path, code: str) -> list[int]:
    """What rater ``code`` means to give at each position: the machine's rank order, one point apart per rater.

    The browser cannot know which photo it shows (that is the point of the survey); the test
    reads the rater's recorded order from the database to act as a rater who agrees with the score.
    """
    from sqlalchemy import select

    from cleftscore.study.db import open_study
    from cleftscore.study.models import SurveyItem, SurveyRater

    with open_study(db) as study, study.transaction(write=False) as s:
        rater = s.scalar(select(SurveyRater).where(SurveyRater.code == code))
        items = {it.id: it for it in s.scalars(select(SurveyItem))}
        ranked = sorted(items, key=lambda i: items[i].photo.scores[0].score)
        rating = {item: 2 + 1 * rank + (1 if code == "R02" and rank == 1 else 0) for rank, item in enumerate(ranked)}
        return [rating[i] for i in rater.order]


def _rate(
    browser, link: str, ratings: list[int], shot: Path | None, requests: list[str], *, keys: bool = False
) -> None:
    context = browser.new_context(viewport={"width": 1000, "height": 900})  # a rater's own browser: no cookies
    page = context.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.goto(link)
    for k, value in enumerate(ratings):
        assert page.inner_text("#progress").startswith(f"Photo {k + 1} of {len(ratings)}")
        page.wait_for_function("document.getElementById('survey-photo').complete")
        assert page.evaluate("document.getElementById('survey-photo').naturalWidth") > 0
        if k == 0 and shot is not None:
            page.screenshot(path=str(shot), full_page=True)
        text = page.content()
        assert "P001" not in text and ".jpg" not in text and "astronaut" not in text
        with page.expect_navigation():  # the form posts and the server sends the next photo
            if keys:
                page.keyboard.press(str(value))
            else:
                page.click(f"#rating-form button[value='{value}']")
    page.click("#submit-ratings")
    assert "can no longer be changed" in page.inner_text("#rater-done")
    page.goto(link)  # coming back after submitting: nothing to rate
    assert page.locator("#rating-form").count() == 0
    context.close()


def test_two_raters_complete_a_survey_and_the_report_shows_icc_and_agreement(server, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    base, db = server
    requests: list[str] = []
    update = os.environ.get("CLEFTSCORE_UPDATE_SCREENSHOT") == "1"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=system_chromium(), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.on("request", lambda r: requests.append(r.url))
        page.set_default_timeout(120_000)
        page.goto(base + "/surveys")
        page.fill("#new-survey input[name=title]", "Surgeons panel")
        page.fill("#new-survey input[name=repeat_fraction]", "0.25")
        page.fill(
            "#new-survey input[name=instructions]", "Rate the lip and nose as you see them; there is no right answer."
        )
        page.click("#new-survey button")
        page.wait_for_url("**/surveys/1")
        page.fill("#invite-form input[name=codes]", "R01 R02")
        page.click("#invite-form button")
        page.wait_for_selector("#invite-links li >> nth=1")
        links = dict(li.split(": ", 1) for li in page.locator("#invite-links li").all_inner_texts())
        assert set(links) == {"R01", "R02"} and all(v.startswith(base + "/survey/r/") for v in links.values())

        _rate(browser, links["R01"], _intended(db, "R01"), tmp_path / "survey_rater.png", requests)
        _rate(browser, links["R02"], _intended(db, "R02"), None, requests, keys=True)  # the number keys

        page.goto(base + "/surveys/1")
        assert page.locator("#raters tbody tr").count() == 2 and "5 of 5" in page.inner_text("#raters")
        page.click("#report-link")
        page.wait_for_url("**/surveys/1/report")
        icc21 = page.inner_text("#icc21")
        icc2k = page.inner_text("#icc2k")
        assert "ICC(2,1)" in icc21 and "n/a" not in icc21 and "ICC(2,k)" in icc2k
        value = float(icc2k.split()[1])
        assert 0.5 < value <= 1.0
        machine = page.locator("#machine tbody tr").first.inner_text()
        cells = machine.split("\t")
        assert cells[0].startswith("asymmetry") and cells[1] == "4"
        assert float(cells[2].split()[0]) > 0.5 and float(cells[3].split()[0]) > 0.9  # raters follow the score's ranks
        assert "ceiling" in page.inner_text("#ceiling")
        page.screenshot(path=str(tmp_path / "survey_report.png"), full_page=True)
        browser.close()
    outside = [u for u in requests if not u.startswith(base + "/")]
    assert not outside, f"the browser reached beyond the server: {outside[:5]}"
    if update:
        for name in ("survey_rater.png", "survey_report.png"):
            shutil.copyfile(tmp_path / name, DOCS / name)
