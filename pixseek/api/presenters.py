"""The service's results as API objects: images, pages of results, jobs, the watcher, the collection.

Every path a client sees goes through the library roots here: an image is named by its root and
its path inside it, a job's paths and errors and the watcher's by ``ROOT_NAME/...``, and an image
outside every root is not shown at all. Clients never see a server path.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from fastapi.responses import Response
from pydantic import BaseModel

from pixseek.api.jobs import Job
from pixseek.api.roots import LibraryRoots
from pixseek.api.schemas import (
    MAX_OFFSET,
    WATCHER_PHASES,
    CollectionStatus,
    DuplicateGroupInfo,
    DuplicatesResponse,
    ImageInfo,
    JobInfo,
    MatchedWord,
    OcrStatus,
    SearchResponse,
    SearchResult,
    VectorIndexStatus,
    WatchedRoot,
    WatcherPhase,
    WatcherStatus,
)

if TYPE_CHECKING:
    from pixseek.library import (
        DuplicateReport,
        IndexedImage,
        LiveCollection,
        SearchHit,
        SearchOutcome,
        WatcherState,
    )


def json_response(model: BaseModel) -> Response:
    """A response model serialised once, here. Returned as the model, FastAPI would validate it
    again (from a second trip to the thread pool, for plain ``def`` handlers) and only then
    serialise it: ~1 ms per search on 2 busy cores, for a value built from validated parts."""
    return Response(model.model_dump_json(), media_type="application/json")


def image_info(image: IndexedImage | SearchHit, roots: LibraryRoots) -> ImageInfo | None:
    """A hit or an indexed image (both carry the metadata), if its file lies inside a root."""
    located = roots.locate(image.path)
    if located is None:
        return None
    root, relative = located
    return ImageInfo(
        id=image.id,
        path=relative,
        root=root,
        format=image.format,
        width=image.width,
        height=image.height,
        size_bytes=image.size,
        taken_at=image.taken_at,
        camera=image.camera,
        gps_lat=image.gps_lat,
        gps_lon=image.gps_lon,
        thumbnail_url=f"/images/{image.id}/thumbnail",
        file_url=f"/images/{image.id}/file",
        similar_url=f"/images/{image.id}/similar",
    )


def page(outcome: SearchOutcome, offset: int, k: int, started: float, roots: LibraryRoots) -> SearchResponse:
    """Results ``offset .. offset + k`` of the outcome's hits, and where the next page starts if
    there is one (a search that counted its matches knows; otherwise a full page says there may be)."""
    hits = outcome.hits
    results = []
    for hit in hits[offset : offset + k]:  # hits carry their metadata: no second query
        info = image_info(hit, roots)
        if info is not None:
            results.append(
                SearchResult(
                    image=info,
                    score=hit.score,
                    keyword_score=hit.keyword_score,
                    matches=[
                        MatchedWord(
                            source=m.source,
                            text=m.text,
                            box=None if m.box is None else list(m.box),
                            confidence=m.confidence,
                        )
                        for m in hit.matches
                    ],
                    fused_score=hit.fused_score,
                    rerank_scores=hit.rerank_scores or {},
                    final_score=hit.final_score,
                    rerank_error=hit.rerank_error,
                )
            )
    more = len(hits) >= offset + k if outcome.total is None else outcome.total > offset + k
    query = outcome.query
    return SearchResponse(
        results=results,
        offset=offset,
        k=k,
        next_offset=offset + k if more and offset + k < MAX_OFFSET else None,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
        query=None if query is None else query.describe(),
        total=outcome.total,
        cutoff=outcome.cutoff,
        mode=outcome.mode,
        reranked_text=outcome.rerank_text,
    )


def job_info(job: Job, roots: LibraryRoots) -> JobInfo:
    return JobInfo(
        id=job.id,
        state=job.state,
        paths=[roots.display(path) for path in job.paths],
        done=job.done,
        total=job.total,
        embedded=job.embedded,
        failed=job.failed,
        error=None if job.error is None else roots.redact(job.error),
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def watcher_status(watched: WatcherState, roots: LibraryRoots) -> WatcherStatus:
    return WatcherStatus(
        phase=watcher_phase(watched.phase),
        roots=[WatchedRoot(path=roots.display(r.path), mode=r.mode, reason=r.reason) for r in watched.roots],
        pending=watched.pending,
        last_error=None if watched.last_error is None else roots.redact(watched.last_error),
        last_error_at=watched.last_error_at,
        last_change_at=watched.last_change_at,
        totals=watched.totals,
    )


def watcher_phase(value: str) -> WatcherPhase:
    """The watcher's phase (plain text in the engine) as the schema's literal: a phase the schema
    does not know fails here, by name, rather than as a response that fails its own validation."""
    for phase in WATCHER_PHASES:
        if phase == value:
            return phase
    raise ValueError(f"unknown watcher phase {value!r}")


def collection_status(live: LiveCollection, searchable: int, roots: LibraryRoots) -> CollectionStatus:
    return CollectionStatus(
        name=live.name,
        model=live.model,
        dim=live.dim,
        precision=live.precision,
        ocr=None
        if live.ocr is None
        else OcrStatus(engine=live.ocr.engine, languages=list(live.ocr.languages)),
        indexed=live.indexed,
        searchable=searchable,
        failed=live.failed,
        vectors=live.vectors,
        index=VectorIndexStatus(**asdict(live.index)),
        kept_out=[roots.redact(path) for path in live.excluded],
    )


def duplicates_page(
    report: DuplicateReport, offset: int, limit: int, started: float, roots: LibraryRoots
) -> DuplicatesResponse:
    """Groups ``offset .. offset + limit`` of the report; a member whose file no longer lies
    inside a root (a symlink changed since) is left out of its group."""
    groups = []
    for group in report.groups[offset : offset + limit]:
        members = [info for info in (image_info(member, roots) for member in group.members) if info]
        groups.append(
            DuplicateGroupInfo(
                kind="exact" if group.kind == "exact" else "near",
                keeper_id=group.keeper.id,
                similarity=group.similarity,
                distance=group.distance,
                members=members,
            )
        )
    more = len(report.groups) > offset + limit
    return DuplicatesResponse(
        groups=groups,
        total=len(report.groups),
        offset=offset,
        limit=limit,
        next_offset=offset + limit if more else None,
        threshold=report.options.threshold,
        max_distance=report.options.max_distance,
        images=report.images,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
    )
