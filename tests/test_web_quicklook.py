"""The web app's first hour: quick look (nothing stored), favicon, plain wording, the change on the compare page."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from cleftscore.web import queries  # noqa: E402
from cleftscore.web.app import MethodChoice, create_app  # noqa: E402
from cleftscore.web.context import gan_availability  # noqa: E402
from cleftscore.web.settings import WebSettings  # noqa: E402

BASE = "http://127.0.0.1:8765"


@pytest.fixture()
def client(tmp_path: Path):
    app = create_app(WebSettings(db=tmp_path / "study.sqlite", size=128, start_worker=False),
                     gan=MethodChoice("gan", False, "no weights in the tests"))  # fmt: skip
    with TestClient(app, base_url=BASE) as c:
        yield c, app, tmp_path


def test_quick_look_page_refuses_what_is_not_a_photo(client) -> None:
    c, app, _ = client
    page = c.get("/quicklook")
    assert page.status_code == 200 and "Nothing is stored" in page.text and 'id="quicklook-form"' in page.text
    headers = {"X-CSRF-Token": app.state.ctx.guard.csrf_token}
    bad = c.post("/api/quicklook", files={"file": ("x.jpg", b"not a photo", "image/jpeg")}, headers=headers)
    assert bad.status_code == 415 and "/tmp" not in bad.text
    # Like every state-changing request, it needs the page's CSRF token.
    assert c.post("/api/quicklook", files={"file": ("x.jpg", b"not a photo", "image/jpeg")}).status_code == 403


def test_favicon_and_a_plain_gan_notice(client) -> None:
    c, _, _ = client
    icon = c.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/png" and icon.content[:4] == b"\x89PNG"
    home = c.get("/").text
    assert 'rel="icon"' in home and 'href="/quicklook"' in home
    reason = gan_availability().reason  # no weights here
    assert "/root" not in reason and ".cache" not in reason and "cleftscore weights" not in reason


def _visit(vid: int, scores: list[float]) -> queries.VisitPage:
    photos = tuple(
        queries.PhotoView(i, f"p{i}.jpg", 10, 10, "", (queries.ScoreView(i, "asymmetry", s, "mouth", "k", {}, {}, "", "", True),))
        for i, s in enumerate(scores)
    )  # fmt: skip
    return queries.VisitPage(vid, "P1", dt.date(2026, 1, vid), "pre-op", None, None, photos)


def test_the_change_between_two_visits_has_a_ci_and_normal_units() -> None:
    ch = queries.visit_change(_visit(1, [-4.0, -3.8, -4.2]), _visit(2, [-2.5, -2.3, -2.6]), n_boot=500)
    assert ch is not None and ch.change == pytest.approx(1.5333, abs=1e-3)
    assert ch.ci_low is not None and ch.ci_low < ch.change < ch.ci_high and ch.ci_low > 0
    assert ch.in_normal_units is not None and ch.in_normal_units[0] > 0 and ch.reference
    one = queries.visit_change(_visit(1, [-4.0]), _visit(2, [-2.5, -2.4]))
    assert one is not None and one.ci_low is None and one.change == pytest.approx(1.55)
    assert queries.visit_change(_visit(1, []), _visit(2, [-2.5])) is None


def test_a_score_view_reads_its_placement_quality_and_explanation() -> None:
    m = {"reference_percentile": {"value": 99.0, "definition": "percent of the reference 'clinic' (40 normal photos) ..."},
         "reference_z": {"value": 2.6, "definition": ""}, "quality_sharpness": {"value": 0.52, "definition": ""}}  # fmt: skip
    sc = queries.ScoreView(1, "asymmetry", -4.0, "mouth", "k", {}, m, "2 faces found", "", True)
    assert (
        sc.placement.reading == "outside the normal range"
        and sc.placement.reference == "clinic"
        and sc.placement.n == 40
    )
    assert sc.quality == ["sharpness: 0.52"] and "mirror image" in sc.explanation and sc.region == "upper-lip skin"
    gan = queries.ScoreView(2, "gan", 3.0, "mouth", "k", {}, {}, "", "", False)
    assert gan.placement is None and gan.region == "mouth and nose" and "redraws" in gan.explanation


def test_an_unknown_patient_or_visit_gets_an_html_page_with_a_way_back(client) -> None:
    c, _, _ = client
    for url in ("/patients/NOBODY", "/visits/999", "/compare?a=998&b=999", "/patients/NOBODY/summary"):
        r = c.get(url)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), url
        assert 'id="back" href="/"' in r.text and "There is no" in r.text
        assert "cleftscore study" not in r.text and "detail" not in r.text


def test_the_summary_styles_are_served_from_the_one_copy_a_file_inlines(client) -> None:
    from cleftscore.study.summary import SUMMARY_CSS

    c, _, _ = client
    r = c.get("/summary.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css") and r.text == SUMMARY_CSS
    assert "@page" in r.text  # the print layout


def test_serve_reference_places_the_scores_it_was_built_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import uvicorn
    from typer.testing import CliRunner

    from cleftscore.cli import app as cli
    from cleftscore.score.reference import load_reference
    from cleftscore.web.app import _make_settings

    clinic = tmp_path / "clinic.json"
    clinic.write_text(json.dumps({**load_reference().to_dict(), "name": "clinic children"}))
    gan_ref = tmp_path / "gan.json"
    gan_ref.write_text(json.dumps({**load_reference().to_dict(), "method": "gan", "score": "paper"}))
    web = WebSettings(db=tmp_path / "s.sqlite", reference=clinic)
    make = _make_settings(web)
    assert make("asymmetry", "mouth").reference == str(clinic) and make("gan", "mouth").reference is None
    assert web.reference_for("asymmetry", "face-referenced").name == "clinic children"
    assert web.reference_for("gan", "paper") is None  # no reference of that score: none is made up
    gan_web = WebSettings(db=tmp_path / "s.sqlite", reference=gan_ref)
    assert _make_settings(gan_web)("gan", "mouth").reference == str(gan_ref)
    assert gan_web.reference_for("asymmetry", "face-referenced").name != "clinic children"  # the shipped one

    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    r = CliRunner().invoke(cli, ["serve", "--db", str(tmp_path / "t.sqlite"), "--reference", str(bad)])
    assert r.exit_code == 1 and "not a normative reference" in r.output
    assert not (tmp_path / "t.sqlite").exists()  # refused before the study is opened
