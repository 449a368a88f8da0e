"""A printable one-page summary of one patient: timeline, before and after, change with its CI.

:func:`patient_summary_html` returns one self-contained HTML page (pictures embedded, inline
print styles sized for one A4 or Letter page, nothing loaded from the network) with the
patient's score timeline, the panels of the pre-op visit and the latest visit, the change with
its 95 % bootstrap interval (also in units of the normal reference's spread), where each of the
two visits falls among normal faces, the method, the cleftscore version and the disclaimer.
No PDF: no PDF library is installed with cleftscore; the browser's "print to PDF" makes one
from this page.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from cleftscore.study.db import Study, StudyError
from cleftscore.study.models import Photo, Score
from cleftscore.study.outcomes import Change, PatientSeries, VisitScores, compute_outcomes
from cleftscore.study.records import find_patient

__all__ = ["SUMMARY_CSS", "PatientSummary", "patient_summary", "patient_summary_html"]

_PANEL = "panel.png"


@dataclass(frozen=True)
class PatientSummary:
    """What the summary page shows (see :func:`patient_summary`)."""

    code: str
    details: str
    method: str
    series: PatientSeries
    change: Change | None
    before: VisitScores | None
    after: VisitScores | None
    before_panel: str
    after_panel: str
    before_placement: Any
    after_placement: Any
    reference: Any
    version: str
    notes: tuple[str, ...]


def _placement(reference: Any, visit: VisitScores | None) -> Any:
    return reference.place(visit.mean) if reference is not None and visit is not None else None


def _panel(study: Study, photo_ids: tuple[int, ...], method: str) -> str:
    """The stored path of the first photo's latest panel of ``method`` ('' without one)."""
    with study.transaction(write=False) as s:
        for pid in photo_ids:
            ph = s.scalars(select(Photo).where(Photo.id == pid).options(selectinload(Photo.scores))).first()
            scores = [sc for sc in (ph.scores if ph else []) if sc.method == method]
            if scores and scores[-1].pictures.get(_PANEL):
                return str(scores[-1].pictures[_PANEL])
    return ""


def _face_referenced(study: Study, photo_ids: tuple[int, ...]) -> bool:
    with study.transaction(write=False) as s:
        sc = s.scalars(select(Score).where(Score.photo_id.in_(photo_ids))).first()
        return bool(sc is not None and sc.method == "asymmetry"
                    and (sc.settings.get("score") or {}).get("asymmetry_score") == "face-referenced")  # fmt: skip


def patient_summary(study: Study, code: str, *, method: str | None = None, reference: Any = None,
                    n_boot: int = 10_000, seed: int = 0) -> PatientSummary:  # fmt: skip
    """Gather one patient's summary.

    Parameters
    ----------
    study : Study
    code : str
        The patient's code.
    method : str, optional
        Normalizer whose scores are summarised (needed when the study has several).
    reference : NormativeReference, optional
        Where the visits are placed; default the shipped one where it fits the scores.
    n_boot, seed : int
        Bootstrap of the change's interval.

    Raises
    ------
    NotFoundError
        Unknown patient.
    StudyError
        No scores, or several methods and none chosen.
    """
    from cleftscore import __version__
    from cleftscore.score.reference import reference_for

    with study.transaction(write=False) as s:
        p = find_patient(s, code)
        details = " · ".join(x for x in (f"born {p.birth_year}" if p.birth_year else "", p.cleft_type or "",
                                           p.cleft_side or "") if x)  # fmt: skip
    out = compute_outcomes(study, method=method, n_boot=n_boot, seed=seed)
    series = next((x for x in out.patients if x.code == code), None)
    if series is None or not series.visits:
        raise StudyError(f"patient {code} has no scored visits of the {out.method} method yet")
    changes = [c for c in out.changes if c.code == code]
    change = changes[-1] if changes else None
    before = next((v for v in series.visits if change and v.visit_id == change.baseline_visit_id), None)
    after = next((v for v in series.visits if change and v.visit_id == change.visit_id), None)
    if before is None:
        before, after = series.visits[0], (series.visits[-1] if len(series.visits) > 1 else None)
    if reference is None:
        kind = "face-referenced" if _face_referenced(study, before.photo_ids) else "paper"
        reference = reference_for(out.method, kind)
    notes = tuple(n for n in out.notes if code in n or "settings" in n)
    return PatientSummary(
        code=code, details=details, method=out.method, series=series, change=change, before=before, after=after,
        before_panel=_panel(study, before.photo_ids, out.method),
        after_panel=_panel(study, after.photo_ids, out.method) if after else "",
        before_placement=_placement(reference, before), after_placement=_placement(reference, after),
        reference=reference, version=__version__, notes=notes,
    )  # fmt: skip


def _img(data: bytes, alt: str) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" alt="{html.escape(alt)}">'


#: The summary page's styles (inline in a file, or served beside the web app's pages).
SUMMARY_CSS = """
@page { size: A4; margin: 12mm; }
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #111; margin: 0 auto;
  max-width: 190mm; font-size: 10.5pt; }
h1 { font-size: 16pt; margin: 0 0 2mm; } h2 { font-size: 11.5pt; margin: 4mm 0 1mm; }
.muted { color: #555; } .disclaimer { border: 1px solid #c9a227; background: #fff8dc; padding: 1.5mm 3mm; }
img { max-width: 100%; } .timeline img { max-height: 60mm; } .panels img { max-height: 34mm; }
table { border-collapse: collapse; } td, th { border-bottom: 1px solid #ccc; padding: 1mm 2mm; text-align: left; }
.reading { font-weight: bold; }
@media print { a { color: inherit; text-decoration: none; } .no-print { display: none; } }
"""


def _visit_line(label: str, v: VisitScores | None, pl: Any) -> str:
    if v is None:
        return f"<tr><th>{label}</th><td colspan='3' class='muted'>no such visit yet</td></tr>"
    reading = (f"<span class='reading'>{html.escape(pl.reading)}</span> (less normal than {pl.percentile:.0f} % "
               f"of normal faces, z {pl.z:+.1f})") if pl is not None else ""  # fmt: skip
    return (f"<tr><th>{label}</th><td>visit {v.visit_id}, {v.date.isoformat()} {html.escape(v.phase)}</td>"
            f"<td>mean score {v.mean:.3f} over {len(v.scores)} photo(s)</td><td>{reading}</td></tr>")  # fmt: skip


def _change_text(sm: PatientSummary) -> str:
    c = sm.change
    if c is None:
        return "<p class='muted'>No change yet: it needs a scored pre-op visit and a later scored visit.</p>"
    ci = (f"95 % CI {c.ci_low:+.3f} to {c.ci_high:+.3f}" if c.ci_low is not None and c.ci_high is not None
          else html.escape(c.note))  # fmt: skip
    text = (
        f"<p><b>Change {c.change:+.3f}</b> ({ci}), {c.days} days after the pre-op visit; positive = closer to normal."
    )
    ref = sm.reference
    if ref is not None:
        sp = ref.spread
        units = f"{c.change / sp:+.2f}"
        if c.ci_low is not None and c.ci_high is not None:
            units += f" (95 % CI {c.ci_low / sp:+.2f} to {c.ci_high / sp:+.2f})"
        text += f" In units of the spread of normal faces: {units}."
    return text + "</p>"


def patient_summary_html(study: Study, code: str, *, method: str | None = None, reference: Any = None,
                         n_boot: int = 10_000, seed: int = 0, stylesheet: str | None = None) -> str:  # fmt: skip
    """One printable page (HTML with print styles) summarising a patient (see the module's docstring).

    ``stylesheet``: a URL the page links its styles from instead of holding them (a server whose
    Content-Security-Policy refuses inline styles serves :data:`SUMMARY_CSS` there).

    Raises
    ------
    NotFoundError, StudyError
        As :func:`patient_summary`.
    """
    from cleftscore.report.pictures import DISCLAIMER
    from cleftscore.report.study_plots import timeline_png

    sm = patient_summary(study, code, method=method, reference=reference, n_boot=n_boot, seed=seed)
    esc = html.escape
    method_text = "mirror (the face against its own mirror image)" if sm.method == "asymmetry" else sm.method
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Patient {esc(code)} · cleftscore summary</title>",
        f'<link rel="stylesheet" href="{esc(stylesheet)}">' if stylesheet else f"<style>{SUMMARY_CSS}</style>",
        "</head><body>",
        f"<h1>Patient {esc(code)}</h1>",
        f"<p class='muted'>{esc(sm.details)}{' · ' if sm.details else ''}printed {dt.date.today().isoformat()}</p>",
        f"<p class='disclaimer'><b>{esc(DISCLAIMER)}</b> The scores support research and discussion, not a "
        "diagnosis.</p>",
        "<h2>Score over time</h2>",
        f"<div class='timeline'>{_img(timeline_png(sm.series, study.files), f'score timeline of {code}')}</div>",
        "<h2>Before and after</h2><table>",
        _visit_line("before", sm.before, sm.before_placement),
        _visit_line("after", sm.after, sm.after_placement),
        "</table><div class='panels'>",
    ]  # fmt: skip
    for label, rel in (("before", sm.before_panel), ("after", sm.after_panel)):
        path = study.files / rel if rel else None
        if path is not None and path.is_file():
            parts.append(f"<p>{label}:<br>{_img(path.read_bytes(), f'{label}: panel of the first photo')}</p>")
    parts += ["</div>", "<h2>Change</h2>", _change_text(sm), "<h2>How this was measured</h2><p>"]
    parts.append(f"Method: {esc(method_text)}. ")
    if sm.reference is not None:
        parts.append(f"Reference: {esc(sm.reference.describe())}. Reading: below 90th percentile within the normal "
                     "range, 90 to 97.5 borderline, 97.5 and above outside the normal range. ")  # fmt: skip
    parts.append(f"cleftscore {esc(sm.version)}.</p>")
    if sm.notes:
        parts.append(f"<p class='muted'>{esc(' '.join(sm.notes))}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
