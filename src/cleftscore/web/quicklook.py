"""The quick look: one photo scored with the mirror method and shown at once; nothing is stored.

``GET /quicklook`` is the page (drop one photo); ``POST /api/quicklook`` checks the photo by its
content, scores it in a temporary folder that is deleted before the answer leaves, and returns
the reading, the score, the photo's notes and quality, and the panel as a data URI. To keep a
result, the user files the photo under a patient and visit (the visit page's upload).
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse

from cleftscore.web import queries
from cleftscore.web.context import AppContext
from cleftscore.web.schemas import ERRORS, Problem
from cleftscore.web.uploads import UploadError, check_photo

__all__ = ["install_quicklook", "quick_look"]


def quick_look(
    photo: Path, *, size: int | None, detector: str, work: Path, reference: str | None = None
) -> dict[str, Any]:
    """Score one photo with the mirror method into ``work`` and say what a person needs to read.

    Returns
    -------
    dict
        ``ok``, ``message`` (why it failed), ``score``, ``reading``, ``percentile``, ``z``,
        ``reference``, ``n``, ``notes`` (list), ``quality`` (list), ``explanation``, ``panel``
        (a PNG data URI) and ``heatmap`` (the plain heat map, a PNG data URI).
    """
    from cleftscore.run.folder import read_record
    from cleftscore.run.pipeline import score_photos
    from cleftscore.run.settings import PipelineSettings
    from cleftscore.score.paper import ScoreSettings
    from cleftscore.score.reference import placement_of

    settings = PipelineSettings(method="asymmetry", size=size, detector=detector, score=ScoreSettings(),
                                reference=reference)  # fmt: skip
    out = work / "run"
    (res,) = score_photos([photo], settings, out_dir=out, keep_images=False)
    if not res.ok:
        # The message names the temporary file: say "the photo" instead.
        return {"ok": False, "message": res.message.replace(str(photo), "the photo").replace(photo.name, "the photo")}
    rec = read_record(out, res.photo_id)
    pl = placement_of(rec.measures)
    folder = out / "photos" / rec.photo_id

    def uri(name: str) -> str:
        p = folder / name
        return "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii") if p.is_file() else ""

    view = queries.ScoreView(0, rec.method, float(rec.score or 0.0), "", "", {},
                             {k: {"value": m.value, "definition": m.definition} for k, m in rec.measures.items()},
                             "; ".join(rec.notes), "", True)  # fmt: skip
    return {
        "ok": True,
        "message": "",
        "score": rec.score,
        "reading": pl.reading if pl else "",
        "percentile": pl.percentile if pl else None,
        "z": pl.z if pl else None,
        "reference": pl.reference if pl else "",
        "n": pl.n if pl else 0,
        "notes": list(rec.notes),
        "quality": view.quality,
        "explanation": view.explanation,
        "panel": uri("panel.png"),
        "heatmap": uri("heatmap.png"),
    }


def install_quicklook(app: FastAPI, ctx: AppContext) -> None:
    """Register the quick-look page and its endpoint on ``app``."""

    @app.get("/quicklook", response_class=HTMLResponse, include_in_schema=False)
    async def quicklook_page(request: Request) -> HTMLResponse:
        return ctx.templates.TemplateResponse(
            request, "quicklook.html",
            {"csrf": ctx.guard.csrf_token, "reading_note": queries.READING_NOTE, "limits": ctx.settings},
        )  # fmt: skip

    @app.post("/api/quicklook", responses={**ERRORS, 413: {"model": Problem}, 415: {"model": Problem}})
    async def quicklook(file: Annotated[UploadFile, File(description="One photo (content is checked, not its name).")]) -> dict[str, Any]:  # fmt: skip
        """Score one photo with the mirror method and return its reading and panel; nothing is stored."""
        limits = ctx.settings
        data = await file.read(limits.max_file_bytes + 1)
        try:
            checked = await asyncio.to_thread(check_photo, file.filename or "", data, max_bytes=limits.max_file_bytes,
                                              max_pixels=limits.max_pixels)  # fmt: skip
        except UploadError as exc:  # the statuses of an upload to a visit (web/api.py)
            raise HTTPException(413 if "over the limit" in str(exc) else 415, str(exc)) from None

        def run() -> dict[str, Any]:
            with tempfile.TemporaryDirectory(prefix="quicklook-") as tmp:
                path = Path(tmp) / checked.name
                path.write_bytes(checked.data)
                return quick_look(path, size=limits.size, detector=limits.detector, work=Path(tmp),
                                  reference=limits.reference_path("asymmetry", "face-referenced"))  # fmt: skip

        return await asyncio.to_thread(run)
