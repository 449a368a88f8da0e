"""End to end in a real headless browser: Debian's chromium driven by Playwright.

The server runs in this process on 127.0.0.1 (a free port); the browser creates a patient and
two visits, uploads photos (file picker for one visit, drag and drop for the other), waits for
the scores, moves the heat-map slider, opens the comparison and downloads the CSV. Every request
the browser makes is recorded: none may go anywhere but the server. The screenshot of the visit
page is taken each run; with ``CLEFTSCORE_UPDATE_SCREENSHOT=1`` it replaces ``docs/web_visit.png``.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from web_helpers import served, system_chromium

pytest.importorskip("fastapi")

DOCS = Path(__file__).resolve().parent.parent / "docs"
FACES = ("tiny_128px_portrait_uniform.jpg", "exif_orientation6_tiny_portrait.jpg")


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[str]:
    from cleftscore.web.app import MethodChoice, create_app
    from cleftscore.web.settings import WebSettings

    app = create_app(
        WebSettings(db=tmp_path / "study.sqlite", port=0, size=128),
        gan=MethodChoice("gan", False, "no weights in the tests"),
    )
    with served(app) as url:
        yield url


@pytest.mark.slow
def test_a_clinician_scores_two_visits_and_compares_them(server: str, local_faces: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    executable = system_chromium()
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
        page.on("request", lambda r: requests.append(r.url))
        page.set_default_timeout(180_000)  # scoring on a loaded 2-core machine

        page.goto(server + "/")
        page.fill("#add-patient input[name=code]", "P001")
        page.select_option("#add-patient select[name=cleft_side]", "left")
        page.click("#add-patient button")
        page.wait_for_url(server + "/patients/P001")

        page.fill("#add-visit input[name=date]", "2026-01-10")
        page.select_option("#add-visit select[name=phase]", "pre-op")
        page.click("#add-visit button")
        page.wait_for_url("**/visits/*")
        pre = page.url
        assert "GAN method not offered" in page.inner_text("#upload")

        page.set_input_files("#file-input", [str(local_faces / n) for n in FACES])
        assert page.inner_text("#chosen") == ", ".join(FACES)
        page.click("#upload-button")
        page.wait_for_selector("figure.viewer >> nth=1")  # both photos scored (the page reloads when the job ends)
        assert page.locator(".job-status").first.inner_text() == "done"
        scores = page.locator("figure.viewer .score").all_inner_texts()
        assert len(scores) == 2 and all(s.startswith("score = ") for s in scores)

        slider = page.locator("figure.viewer input.opacity").first
        slider.fill("15")
        overlay = page.locator("figure.viewer img.overlay").first
        assert overlay.evaluate("el => el.style.opacity") == "0.15"
        assert page.locator("figure.viewer output").first.inner_text() == "15 %"
        page.locator("figure.viewer input[value=normalized]").first.check()
        assert "/files/pictures/" in page.locator("figure.viewer img.base").first.get_attribute("src")
        slider.fill("60")
        page.locator("figure.viewer input[value=aligned]").first.check()
        shot = tmp_path / "web_visit.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("CLEFTSCORE_UPDATE_SCREENSHOT") == "1":  # refresh the picture in the docs
            shutil.copyfile(shot, DOCS / "web_visit.png")

        with page.expect_download() as info:
            page.click("#csv-link")
        csv = Path(info.value.path()).read_bytes().decode("utf-8-sig").strip().splitlines()
        assert (
            len(csv) == 3 and csv[0].startswith("patient,visit_id") and all(",asymmetry,mouth," in r for r in csv[1:])
        )

        # the second visit, its photo dropped onto the drop zone
        page.goto(server + "/patients/P001")
        page.fill("#add-visit input[name=date]", "2026-04-12")
        page.select_option("#add-visit select[name=phase]", "post-op")
        page.fill("#add-visit input[name=procedure]", "Millard rotation-advancement")
        page.click("#add-visit button")
        page.wait_for_url(lambda url: url.startswith(server + "/visits/") and url != pre)
        data = base64.b64encode((local_faces / "grayscale_tiny_128px_portrait.jpg").read_bytes()).decode()
        dropped = page.evaluate_handle(
            """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "grayscale_tiny_128px_portrait.jpg", { type: "image/jpeg" }));
            return dt;
        }""",
            data,
        )
        page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})
        assert page.inner_text("#chosen") == "grayscale_tiny_128px_portrait.jpg"
        page.select_option("#roi", "face")
        page.click("#upload-button")
        page.wait_for_selector("figure.viewer")
        # The asymmetry method's face-referenced score has its own region; "face" went to paper_S.
        assert "region upper-lip skin" in page.inner_text("figure.viewer figcaption")

        page.goto(server + "/patients/P001")
        assert page.locator("#visits tbody tr").count() == 2
        page.click("#compare-form button")
        page.wait_for_url("**/compare?*")
        assert (
            page.locator("#column-1 figure.viewer").count() == 2
            and page.locator("#column-2 figure.viewer").count() == 1
        )
        assert "Millard rotation-advancement" in page.inner_text("#column-2")
        browser.close()
    foreign = [u for u in requests if not u.startswith(server + "/") and not u.startswith(("data:", "blob:"))]
    assert requests and foreign == []
