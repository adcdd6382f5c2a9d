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
    return job_info(state.jobs.submit(paths), state.roots)


@router.get("/jobs/{job_id}", response_model=JobInfo, responses=ERRORS)
def get_job(job_id: str, state: State) -> JobInfo:
    job = state.jobs.get(job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job_info(job, state.roots)
