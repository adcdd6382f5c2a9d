"""The service's own endpoints: what it serves and how (/status), liveness (/health), and
Prometheus metrics (/metrics)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

import pixseek
from pixseek.api.deps import State
from pixseek.api.presenters import collection_status, job_info, watcher_status
from pixseek.api.schemas import StatusResponse

router = APIRouter(tags=["service"])


@router.get("/status", response_model=StatusResponse)
def status(state: State) -> StatusResponse:
    live = state.library.live_collection()
    summary = counts = None
    if live is not None:
        counts = (state.counts()[0], live.indexed)
        summary = collection_status(live, searchable=counts[0], roots=state.roots)
    encoder = state.library.serving.loaded_encoder
    return StatusResponse(
        version=pixseek.__version__,
        collection=summary,
        roots=state.roots.by_name,
        device=encoder.runtime if encoder else None,
        jobs=[job_info(job, state.roots) for job in state.jobs.all()],
        rerankers=list(state.rerankers),
        watcher=None if state.watcher is None else watcher_status(state.watcher.state(), state.roots),
        served=state.served(counts),
    )


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics", response_class=PlainTextResponse)
def prometheus(state: State) -> Response:
    """Prometheus text format: request counts and latencies, images indexed, jobs running."""
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type)
