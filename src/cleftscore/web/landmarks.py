"""The landmark editor: a photo's aligned face with its points; drag or add a point, save, and every score is redone.

Routes (all on the study, nothing from the network):

- ``GET /photos/{id}/landmarks``: the editor page;
- ``GET /photos/{id}/landmarks/aligned.png``: the face aligned on its current points;
- ``GET /api/photos/{id}/landmarks``: the points (aligned pixels), the named points one can add,
  and each score with its heat map and nasolabial measures;
- ``POST /api/photos/{id}/landmarks`` with ``{"points": {"48": [x, y], "alar_crease_left": [x, y]}}``
  (aligned pixels): the points moved or added; the photo is scored again on them
  (:func:`cleftscore.study.corrections.correct_photo`) and the new state comes back.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from cleftscore.errors import CleftscoreError
from cleftscore.web.context import ID, AppContext
from cleftscore.web.schemas import ERRORS

__all__ = ["EDITOR_SIZE", "install_landmarks"]

#: Side of the aligned face the editor shows, in pixels (its points are in these pixels).
EDITOR_SIZE = 512
_CACHED_FACES = 8


class _Faces:
    """The last few prepared faces by (photo, number of edits): preparing one takes a second."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[int, int], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, study: Any, photo_id: int) -> Any:
        from cleftscore.study.corrections import photo_corrections, prepare_with_edit

        key = (photo_id, len(photo_corrections(study, photo_id)))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        face = prepare_with_edit(study, photo_id, size=EDITOR_SIZE)
        with self._lock:
            self._items[key] = face
            while len(self._items) > _CACHED_FACES:
                self._items.popitem(last=False)
        return face


def _state(study: Any, faces: _Faces, photo_id: int) -> dict[str, Any]:
    """What the editor draws: points in aligned pixels, the named points, each score and its measures."""
    import json

    import numpy as np

    from cleftscore.face.align import transform_points
    from cleftscore.face.measures import AUTOMATIC_POINTS, HAND_POINTS
    from cleftscore.study.corrections import photo_corrections
    from cleftscore.study.models import Photo

    face = faces.get(study, photo_id)
    n_edits = len(photo_corrections(study, photo_id))
    added: dict[str, list[float]] = {}
    if face.edit is not None and face.edit.added:
        xy = transform_points(face.aligned.to_aligned, np.array(list(face.edit.added.values())))
        added = {n: [round(float(x), 2), round(float(y), 2)] for n, (x, y) in zip(face.edit.added, xy, strict=True)}
    with study.transaction(write=False) as s:
        photo = s.get(Photo, photo_id)
        scores = [{"id": sc.id, "method": sc.method, "score": sc.score,
                   "heatmap": "/files/" + sc.pictures.get("overlay.png", sc.pictures.get("heatmap.png", "")),
                   "measures": {k: m["value"] for k, m in json.loads(sc.measures_json).items()
                                if k.startswith("nl_") or k == "landmarks_corrected_points"}}
                  for sc in photo.scores]  # fmt: skip
        name, visit_id = photo.original_name, photo.visit_id
    return {
        "photo_id": photo_id,
        "name": name,
        "visit_id": visit_id,
        "size": EDITOR_SIZE,
        "image": f"/photos/{photo_id}/landmarks/aligned.png?edits={n_edits}",
        "points": {str(i): [round(float(x), 2), round(float(y), 2)] for i, (x, y) in enumerate(face.aligned.landmarks)},
        "added": added,
        "named": dict(AUTOMATIC_POINTS),
        "hand_points": dict(HAND_POINTS),
        "scores": scores,
        "edits": n_edits,
    }


def install_landmarks(app: FastAPI, ctx: AppContext) -> None:
    """Register the landmark editor's page and endpoints on ``app``."""
    study = ctx.study
    faces = _Faces()

    async def state_or_error(photo_id: int) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(_state, study, faces, photo_id)
        except CleftscoreError as exc:
            raise HTTPException(404 if "no photo" in str(exc) else 400, str(exc)) from None

    @app.get("/photos/{photo_id}/landmarks", response_class=HTMLResponse, include_in_schema=False)
    async def editor(request: Request, photo_id: ID) -> HTMLResponse:
        state = await state_or_error(photo_id)
        return ctx.templates.TemplateResponse(request, "landmarks.html", {"csrf": ctx.guard.csrf_token, "s": state})

    @app.get("/photos/{photo_id}/landmarks/aligned.png", include_in_schema=False)
    async def aligned_png(photo_id: ID) -> Response:
        def draw() -> bytes:
            import io

            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(faces.get(study, photo_id).aligned.image).save(buf, format="PNG")
            return buf.getvalue()

        try:
            png = await asyncio.to_thread(draw)
        except CleftscoreError as exc:
            raise HTTPException(404, str(exc)) from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})

    @app.get("/api/photos/{photo_id}/landmarks", responses=ERRORS)
    async def landmarks_state(photo_id: ID) -> dict[str, Any]:
        """A photo's landmarks in its aligned face, the points one can add, and its scores with their measures."""
        return await state_or_error(photo_id)

    @app.post("/api/photos/{photo_id}/landmarks", responses=ERRORS)
    async def save_landmarks(
        photo_id: ID, points: Annotated[dict[str, list[float]], Body(embed=True)]
    ) -> dict[str, Any]:
        """Move or add points (aligned pixels) and score the photo again on them; returns the new state."""
        from cleftscore.run.corrections import LandmarkEntry
        from cleftscore.study.corrections import correct_photo

        if not points or len(points) > 100:
            raise HTTPException(400, "send between 1 and 100 points")
        try:
            entry = LandmarkEntry(f"photo {photo_id}", "aligned", {k: tuple(v) for k, v in points.items()},  # type: ignore[misc]
                                  source="web editor")  # fmt: skip
        except (ValueError, TypeError) as exc:
            raise HTTPException(400, str(exc)) from None
        try:
            lines = await asyncio.to_thread(correct_photo, study, photo_id, entry, aligned_size=EDITOR_SIZE,
                                            cache_dir=ctx.settings.cache_dir)  # fmt: skip
        except CleftscoreError as exc:
            raise HTTPException(404 if "no photo" in str(exc) else 400, str(exc)) from None
        state = await state_or_error(photo_id)
        state["lines"] = [line.__dict__ for line in lines]
        return state
