"""Indexing over the API: start a job on the library roots (or one sub-path), poll it.

Starting one needs the API key when one is configured; jobs run one at a time in the background
(or, with ``serve --watch``, as rescans by the watcher: one writer per collection).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from pixseek.api.deps import State, require_key
from pixseek.api.errors import ERRORS, PATH_ERRORS, with_problems
from pixseek.api.presenters import job_info
from pixseek.api.schemas import IndexRequest, JobInfo
from pixseek.errors import NotFoundError
from pixseek.service.text_reading import OcrChoice

router = APIRouter(tags=["indexing"])


@router.post(
    "/index",
    response_model=JobInfo,
    status_code=202,
    responses=with_problems(PATH_ERRORS, 401, 409),
    dependencies=[Depends(require_key)],
)
def start_index(state: State, request: IndexRequest | None = None) -> JobInfo:
    """Index every library root, or one sub-path of a root; returns the job to poll."""
    if not state.roots:
        raise HTTPException(409, "no library roots configured (pixseek serve --root PATH)")
    path = request.path if request else None
    paths = [state.roots.existing(path)] if path else state.roots.paths
    if request is not None and request.ocr is not None:
        # Recorded before the job is queued: a missing extra or language data is this request's
        # 400, not a failed job; the job (and the watcher's later updates) follow the record.
        ocr = request.ocr
        choice = OcrChoice(False) if ocr is False else OcrChoice(True, tuple(ocr.languages or ()), ocr.engine)
        state.set_ocr(choice)
    return job_info(state.jobs.submit(paths), state.roots)


@router.get("/jobs/{job_id}", response_model=JobInfo, responses=ERRORS)
def get_job(job_id: str, state: State) -> JobInfo:
    job = state.jobs.get(job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job_info(job, state.roots)
