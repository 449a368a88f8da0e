"""The JSON endpoints: patients, visits, uploads that become jobs, job state and its events."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import StreamingResponse

from cleftscore.study import records
from cleftscore.web import queries
from cleftscore.web.context import ID, AppContext
from cleftscore.web.schemas import (
    ERRORS,
    JobOut,
    MethodOut,
    PatientIn,
    PatientOut,
    Problem,
    VisitDetailOut,
    VisitIn,
    VisitOut,
)
from cleftscore.web.uploads import CheckedPhoto, UploadError, check_photo

__all__ = ["install_api"]


def _visit_out(page: queries.VisitPage) -> dict[str, Any]:
    return {"id": page.id, "patient": page.code, "date": page.date, "phase": page.phase, "procedure": page.procedure,
            "photos": len(page.photos), "mean_score": page.mean_score}  # fmt: skip


def _job_or_404(ctx: AppContext, job_id: int) -> Any:
    job = ctx.state.job(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job


def install_api(app: FastAPI, ctx: AppContext) -> None:
    """Register every JSON endpoint on ``app``; the handlers share ``ctx`` (study, jobs, settings)."""
    _patient_routes(app, ctx)
    _visit_routes(app, ctx)
    _job_routes(app, ctx)


def _patient_routes(app: FastAPI, ctx: AppContext) -> None:
    study = ctx.study

    @app.get("/api/methods", response_model=list[MethodOut])
    async def methods() -> list[dict[str, Any]]:
        """The normalization methods and whether each can run on this machine."""
        return [{"name": "asymmetry", "available": True, "reason": ""}, ctx.gan.__dict__]

    @app.get("/api/patients", response_model=list[PatientOut])
    async def list_patients(q: Annotated[str, Query(max_length=64, description="Part of the code.")] = "") -> list[Any]:
        """Patients whose code contains ``q``."""
        return [r.__dict__ for r in await asyncio.to_thread(queries.patients, study, q)]

    @app.post("/api/patients", response_model=PatientOut, status_code=201, responses=ERRORS)
    async def create_patient(body: PatientIn) -> dict[str, Any]:
        """Add a patient by pseudonymous code."""
        await asyncio.to_thread(records.add_patient, study, body.code, birth_year=body.birth_year, cleft_type=body.cleft_type,
                                cleft_side=body.cleft_side)  # fmt: skip
        return (await asyncio.to_thread(queries.patient_page, study, body.code)).patient.__dict__

    @app.get("/api/patients/{code}", response_model=PatientOut, responses=ERRORS)
    async def get_patient(code: str) -> dict[str, Any]:
        return (await asyncio.to_thread(queries.patient_page, study, code)).patient.__dict__

    @app.get("/api/patients/{code}/visits", response_model=list[VisitOut], responses=ERRORS)
    async def patient_visits(code: str) -> list[dict[str, Any]]:
        page = await asyncio.to_thread(queries.patient_page, study, code)
        return [{"id": v.id, "patient": code, "date": v.date, "phase": v.phase, "procedure": v.procedure, "photos": v.photos,
                 "mean_score": v.mean_score} for v in page.visits]  # fmt: skip

    @app.post("/api/patients/{code}/visits", response_model=VisitOut, status_code=201, responses=ERRORS)
    async def create_visit(code: str, body: VisitIn) -> dict[str, Any]:
        """Add a visit of a patient."""
        visit = await asyncio.to_thread(records.add_visit, study, code, date=body.date, phase=body.phase, procedure=body.procedure,
                                        note=body.note)  # fmt: skip
        return _visit_out(await asyncio.to_thread(queries.visit_page, study, visit.id))


def _visit_routes(app: FastAPI, ctx: AppContext) -> None:
    study = ctx.study

    @app.get("/api/visits/{visit_id}", response_model=VisitDetailOut, responses=ERRORS)
    async def get_visit(visit_id: ID) -> dict[str, Any]:
        page = await asyncio.to_thread(queries.visit_page, study, visit_id)
        out = _visit_out(page)
        out["photo_list"] = [{"id": p.id, "name": p.name, "width": p.width, "height": p.height,
                              "scores": [{"id": s.id, "method": s.method, "roi": s.roi, "score": s.score, "settings_key": s.settings_key,
                                          "pictures": s.pictures} for s in p.scores]} for p in page.photos]  # fmt: skip
        return out

    @app.get("/api/visits/{visit_id}/jobs", response_model=list[JobOut], responses=ERRORS)
    async def visit_jobs(visit_id: ID) -> list[dict[str, Any]]:
        return [j.to_dict() for j in await asyncio.to_thread(ctx.state.jobs_of_visit, visit_id)]

    @app.post("/api/visits/{visit_id}/jobs", response_model=JobOut, status_code=202,
              responses={**ERRORS, 413: {"model": Problem}, 415: {"model": Problem}})  # fmt: skip
    async def upload(visit_id: ID, files: Annotated[list[UploadFile], File(description="Photos (content is checked, not names).")],
                     method: Annotated[Literal["asymmetry", "gan"], Form()] = "asymmetry",
                     roi: Annotated[Literal["mouth", "face", "full"], Form()] = "mouth") -> dict[str, Any]:  # fmt: skip
        """Upload photos of a visit and queue a job that scores them (progress: ``/api/jobs/{id}/events``)."""
        await asyncio.to_thread(queries.visit_page, study, visit_id)  # 404 for an unknown visit, before reading photos
        if method == "gan" and not ctx.gan.available:
            raise HTTPException(409, ctx.gan.reason + "; choose the asymmetry method")
        checked = await _checked_upload(ctx, files)
        job_id = await asyncio.to_thread(_stage, ctx, visit_id, method, roi, checked)
        ctx.jobs.submit(job_id)
        return _job_or_404(ctx, job_id).to_dict()


async def _checked_upload(ctx: AppContext, files: list[UploadFile]) -> list[CheckedPhoto]:
    """Every uploaded photo checked (bytes, pixels, content), or an HTTP error naming each bad one."""
    limits = ctx.settings
    if not files:
        raise HTTPException(400, "no photo in the upload")
    if len(files) > limits.max_files:
        raise HTTPException(
            413, f"{len(files)} photos in one upload; the limit is {limits.max_files}. Nothing was stored."
        )
    checked: list[CheckedPhoto] = []
    problems: list[str] = []
    for f in files:
        data = await f.read(limits.max_file_bytes + 1)
        try:
            checked.append(await asyncio.to_thread(check_photo, f.filename or "", data, max_bytes=limits.max_file_bytes,
                                                   max_pixels=limits.max_pixels))  # fmt: skip
        except UploadError as exc:
            problems.append(str(exc))
    if problems:
        too_big = all("over the limit" in p for p in problems)
        raise HTTPException(413 if too_big else 415, problems + ["Nothing was stored; fix these and upload again."])
    return checked


def _job_routes(app: FastAPI, ctx: AppContext) -> None:

    @app.get("/api/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
    async def get_job(job_id: ID) -> dict[str, Any]:
        return _job_or_404(ctx, job_id).to_dict()

    @app.post("/api/jobs/{job_id}/cancel", response_model=JobOut, responses=ERRORS)
    async def cancel(job_id: ID) -> dict[str, Any]:
        """Stop a queued or running job; photos scored before the cancel are kept."""
        job = _job_or_404(ctx, job_id)
        if not ctx.jobs.cancel(job_id):
            raise HTTPException(409, f"job {job_id} is {job.status}, nothing to cancel")
        return _job_or_404(ctx, job_id).to_dict()

    @app.post("/api/jobs/{job_id}/rerun", response_model=JobOut, responses=ERRORS)
    async def rerun(job_id: ID) -> dict[str, Any]:
        """Queue an interrupted job again: only its unfinished photos are scored."""
        job = _job_or_404(ctx, job_id)
        if not ctx.jobs.rerun(job_id):
            raise HTTPException(409, f"job {job_id} is {job.status} with nothing left to score")
        return _job_or_404(ctx, job_id).to_dict()

    @app.get("/api/jobs/{job_id}/events", include_in_schema=False)
    async def events(request: Request, job_id: ID) -> StreamingResponse:
        _job_or_404(ctx, job_id)

        async def stream() -> AsyncIterator[str]:
            # Polling a counter keeps no executor thread per open page (a few threads serve every request).
            while not await request.is_disconnected():
                seen = ctx.jobs.version  # before reading, so a change in between is not missed
                job = await asyncio.to_thread(ctx.state.job, job_id)
                if job is None:
                    return
                event = job.to_dict()
                event["steps"] = ctx.jobs.steps(job_id)
                yield f"event: job\ndata: {json.dumps(event)}\n\n"
                if job.finished:
                    return
                for _ in range(60):
                    await asyncio.sleep(0.25)
                    if ctx.closing.is_set():
                        return  # the server is stopping; the page's EventSource retries later
                    if ctx.jobs.version != seen:
                        break
                else:
                    yield ": keep-alive\n\n"

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )


def _stage(ctx: AppContext, visit_id: int, method: str, roi: str, photos: list[CheckedPhoto]) -> int:
    """Write the checked photos into a fresh job folder and record the job (all of it, or nothing)."""
    root = ctx.study.files / "web" / "uploads"
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="job-", dir=root))
    names: list[str] = []
    try:
        for p in photos:
            name = p.name
            stem, suffix = name.rsplit(".", 1)
            k = 1
            while name in names:
                k += 1
                name = f"{stem}_{k}.{suffix}"
            (folder / name).write_bytes(p.data)
            names.append(name)
        return ctx.state.add_job(visit_id, method, roi, folder, names)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
