"""The REST API and the web page, as one FastAPI application.

``create_app(ServerSettings(library_roots=[...], data_dir=..., api_key=...))`` builds it; ``pixseek
serve`` runs it with uvicorn. Handlers that run the model or touch files are plain ``def`` so that
FastAPI runs them in its thread pool and the event loop never blocks.
"""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import pixseek
from pixseek.api.body_timeout import BodyTimeout
from pixseek.api.config import ServerSettings
from pixseek.api.docs import install_docs
from pixseek.api.files import OpenFileResponse
from pixseek.api.jobs import Job
from pixseek.api.metrics import Metrics
from pixseek.api.openapi import describe_this_server
from pixseek.api.roots import PathRefusedError
from pixseek.api.schemas import (
    MAX_K,
    MAX_OFFSET,
    CollectionStatus,
    Filters,
    ImageInfo,
    IndexRequest,
    JobInfo,
    Problem,
    SearchRequest,
    SearchResponse,
    SearchResult,
    StatusResponse,
    VectorIndexStatus,
    WatchedRoot,
    WatcherStatus,
)
from pixseek.api.state import AppState
from pixseek.errors import NotFoundError, PixseekError
from pixseek.media.decode import DecodeError, decode_image
from pixseek.media.files import UnsafeFileError
from pixseek.search.rerank.pipeline import rerank_search
from pixseek.search.searcher import MAX_K as SEARCH_MAX_K
from pixseek.search.searcher import SearchHit
from pixseek.store.database import DatabaseError
from pixseek.store.models import STATUS_INDEXED, ImageRecord
from pixseek.store.repository import CollectionMismatchError, SearchFilters

WEB_DIR = Path(__file__).resolve().parent.parent / "web" / "static"
MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "HEIF": "image/heif",
    "AVIF": "image/avif",
}
ImageId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="Image id, as in search results")]
ERRORS = {400: {"model": Problem}, 404: {"model": Problem}, 422: {"model": Problem}}
PATH_ERRORS = ERRORS | {403: {"model": Problem, "description": "A path outside the library roots"}}


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    state = AppState(settings)
    metrics = Metrics(state)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.warm_up()
        yield
        state.close()

    app = FastAPI(
        title="pixseek",
        version=pixseek.__version__,
        summary="Semantic image search over your image folders",
        lifespan=lifespan,
        docs_url=None,  # install_docs serves them with local assets: the defaults load a CDN
        redoc_url=None,
    )
    install_docs(app)
    describe_this_server(app, state.rerankers)
    app.state.pixseek = state
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )

    app.add_middleware(BodyTimeout, seconds=settings.body_timeout_s)
    app.add_middleware(_Observe, metrics=metrics)  # outermost: it sees BodyTimeout's 408s too
    _install_error_handlers(app, state.roots.redact)

    def require_key(request: Request) -> None:
        """Mutating endpoints: the configured key in X-API-Key or 'Authorization: Bearer <key>'."""
        if settings.api_key is None:
            return
        supplied = request.headers.get("x-api-key") or ""
        bearer = request.headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            supplied = supplied or bearer[7:].strip()
        if not hmac.compare_digest(supplied.encode(), settings.api_key.encode()):
            raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})

    # ---- helpers that turn store rows into API objects ---------------------------------------------
    def image_info(record: ImageRecord | SearchHit) -> ImageInfo | None:
        """A hit or a stored row (both carry the metadata), if its file lies inside a root."""
        located = state.roots.locate(record.path)
        if located is None:
            return None
        root, relative = located
        return ImageInfo(
            id=record.id,
            path=relative,
            root=root,
            format=record.format,
            width=record.width,
            height=record.height,
            size_bytes=record.size,
            taken_at=record.taken_at,
            camera=record.camera,
            gps_lat=record.gps_lat,
            gps_lon=record.gps_lon,
            thumbnail_url=f"/images/{record.id}/thumbnail",
            file_url=f"/images/{record.id}/file",
            similar_url=f"/images/{record.id}/similar",
        )

    def json_response(model: BaseModel) -> Response:
        """A response model serialised once, here. Returned as the model, FastAPI would validate it
        again (from a second trip to the thread pool, for these plain ``def`` handlers) and only then
        serialise it: ~1 ms per search on 2 busy cores, for a value built from validated parts."""
        return Response(model.model_dump_json(), media_type="application/json")

    def page(hits: list[SearchHit], offset: int, k: int, started: float) -> SearchResponse:
        results = []
        for hit in hits[offset : offset + k]:  # hits carry their metadata: no second query
            info = image_info(hit)
            if info is not None:
                results.append(
                    SearchResult(
                        image=info,
                        score=hit.score,
                        rerank_scores=hit.rerank_scores or {},
                        final_score=hit.final_score,
                        rerank_error=hit.rerank_error,
                    )
                )
        more = len(hits) >= offset + k and offset + k < MAX_OFFSET
        return SearchResponse(
            results=results,
            offset=offset,
            k=k,
            next_offset=offset + k if more else None,
            took_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    def search_filters(filters: Filters) -> SearchFilters:
        return SearchFilters(
            folders=state.scope(filters.folders),
            taken_after=filters.taken_after,
            taken_before=filters.taken_before,
            min_width=filters.min_width,
            min_height=filters.min_height,
            formats=tuple(filters.formats),
        )

    def indexed_record(image_id: int) -> ImageRecord:
        record = state.library.store.images([image_id]).get(image_id)
        collection = state.searcher().collection
        if record is None or record.collection_id != collection.id or record.status != STATUS_INDEXED:
            raise NotFoundError(f"no indexed image {image_id}")
        if state.roots.locate(record.path) is None:  # indexed from elsewhere: never served here
            raise NotFoundError(
                f"image {image_id} is outside the folders this server serves (its library roots: "
                f"{', '.join(state.roots.by_name) or 'none'})"
            )
        return record

    # ---- search ----------------------------------------------------------------------------------
    @app.post("/search", response_model=SearchResponse, responses=PATH_ERRORS, tags=["search"])
    def search(request: SearchRequest) -> Response:
        """Text search, in any language the collection's model knows, optionally re-ranked by the
        BridgeTower/BLIP-2 image-text-matching heads (results then ordered by ``final_score``)."""
        started = time.perf_counter()
        filters = search_filters(request.filters)
        choice = request.rerank or settings.rerank
        wanted = _depth(request.offset, request.k)
        if choice == "none":
            if request.min_score is not None:
                raise PixseekError("min_score applies to re-ranking scores: also ask for a rerank")
            hits = state.searcher().by_text(request.query, wanted, filters)
            return json_response(page(hits, request.offset, request.k, started))
        scorers = state.scorers(choice)
        rerank_k = request.rerank_k or state.library.rerank_k
        with state.rerank_lock:
            result = rerank_search(
                state.searcher(),
                request.query,
                scorers,
                k=min(wanted, max(request.k, rerank_k)),  # a deep offset must not re-rank thousands
                rerank_k=rerank_k,
                min_score=request.min_score,
                filters=filters,
            )
        response = page(result.hits, request.offset, request.k, started)
        if len(result.hits) < wanted or wanted >= rerank_k:
            response.next_offset = None  # pages stop at the rerank_k candidates re-ranking sees
        return json_response(response)

    @app.post(
        "/search/image",
        response_model=SearchResponse,
        responses=PATH_ERRORS | {413: {"model": Problem}},
        tags=["search"],
    )
    def search_image(
        file: Annotated[UploadFile, File(description="The query image (JPEG, PNG, WebP, ...)")],
        k: Annotated[int, Form(ge=1, le=MAX_K)] = 24,
        offset: Annotated[int, Form(ge=0, le=MAX_OFFSET)] = 0,
        filters: Annotated[str | None, Form(description="Filters as JSON, like in POST /search")] = None,
    ) -> Response:
        """Search by an uploaded image. Size and pixel count are capped; nothing is fetched by URL."""
        started = time.perf_counter()
        parsed = _upload_filters(filters)
        data = file.file.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(413, f"upload larger than {settings.max_upload_bytes} bytes")
        try:
            image = decode_image(data, max_pixels=settings.max_upload_pixels).image
        except DecodeError as error:
            raise HTTPException(400, f"not a usable image: {error.reason}") from None
        hits = state.searcher().by_image(image, _depth(offset, k), search_filters(parsed))
        return json_response(page(hits, offset, k, started))

    @app.get("/images/{image_id}/similar", response_model=SearchResponse, responses=ERRORS, tags=["search"])
    def similar(
        image_id: ImageId,
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 24,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> Response:
        """More like this: neighbours of an indexed image (itself excluded), from its stored vector."""
        started = time.perf_counter()
        indexed_record(image_id)
        # like() fetches one more (the image itself), so one less than the searcher's limit.
        hits = state.searcher().like(image_id, _depth(offset, k, SEARCH_MAX_K - 1), search_filters(Filters()))
        return json_response(page(hits, offset, k, started))

    # ---- images ----------------------------------------------------------------------------------
    @app.get("/images/{image_id}", response_model=ImageInfo, responses=ERRORS, tags=["images"])
    def image(image_id: ImageId) -> ImageInfo:
        return image_info(indexed_record(image_id))

    sizes = list(settings.thumbnail_sizes)  # the enum of ``size``: a default, unlike an annotation, sees it

    @app.get(
        "/images/{image_id}/thumbnail",
        responses=ERRORS | {304: {"description": "Not modified (ETag)"}},
        tags=["images"],
        response_class=FileResponse,
    )
    def thumbnail(
        request: Request,
        image_id: ImageId,
        size: int = Query(256, description="Longest side in pixels", json_schema_extra={"enum": sizes}),
    ) -> Response:
        """A JPEG thumbnail (sizes 128, 256 or 512), cached on disk and by browsers (ETag)."""
        if size not in settings.thumbnail_sizes:
            raise HTTPException(400, f"size must be one of {', '.join(map(str, settings.thumbnail_sizes))}")
        record = indexed_record(image_id)
        etag = f'"{record.content_hash}-{size}"'
        headers = {"ETag": etag, "Cache-Control": "public, max-age=604800"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        try:
            path = state.thumbnails.get(record.path, record.content_hash, size)
        except (FileNotFoundError, UnsafeFileError):  # gone, or no longer a plain file inside the root
            raise NotFoundError(f"the file of image {image_id} is gone; re-index its folder") from None
        except (OSError, DecodeError) as error:
            raise HTTPException(422, f"cannot make a thumbnail: {getattr(error, 'reason', error)}") from None
        return FileResponse(path, media_type="image/jpeg", headers=headers)

    @app.get("/images/{image_id}/file", responses=ERRORS, tags=["images"], response_class=FileResponse)
    def original(image_id: ImageId) -> Response:
        """The original file of an indexed image inside a library root (never any other path).

        Opened once, beneath its root without following any symlink, and streamed from that
        descriptor: a path checked and then opened again by name could meanwhile lead anywhere.
        """
        record = indexed_record(image_id)
        try:
            opened = state.files.open(record.path)
        except (FileNotFoundError, UnsafeFileError):
            raise NotFoundError(f"the file of image {image_id} is gone; re-index its folder") from None
        except OSError as error:
            raise HTTPException(422, f"cannot read the file: {error.strerror or error}") from None
        return OpenFileResponse(
            opened,
            media_type=MEDIA_TYPES.get(record.format or "", "application/octet-stream"),
            headers={"Cache-Control": "private, max-age=3600"},
        )

    # ---- indexing and status ---------------------------------------------------------------------
    def job_info(job: Job) -> JobInfo:
        return JobInfo(
            id=job.id,
            state=job.state,
            paths=[state.roots.display(path) for path in job.paths],
            done=job.done,
            total=job.total,
            embedded=job.embedded,
            failed=job.failed,
            error=None if job.error is None else state.roots.redact(job.error),
            started_at=job.started_at,
            finished_at=job.finished_at,
        )

    @app.post(
        "/index",
        response_model=JobInfo,
        status_code=202,
        responses=PATH_ERRORS | {401: {"model": Problem}, 409: {"model": Problem}},
        dependencies=[Depends(require_key)],
        tags=["indexing"],
    )
    def start_index(request: IndexRequest | None = None) -> JobInfo:
        """Index every library root, or one sub-path of a root; returns the job to poll."""
        if not state.roots:
            raise HTTPException(409, "no library roots configured (pixseek serve --root PATH)")
        path = request.path if request else None
        paths = [state.roots.existing(path)] if path else state.roots.paths
        return job_info(state.jobs.submit(paths))

    @app.get("/jobs/{job_id}", response_model=JobInfo, responses=ERRORS, tags=["indexing"])
    def get_job(job_id: str) -> JobInfo:
        job = state.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id}")
        return job_info(job)

    @app.get("/status", response_model=StatusResponse, tags=["service"])
    def status() -> StatusResponse:
        store = state.library.store
        collection = store.collection(settings.collection)
        summary = counts = None
        if collection is not None:
            stats = store.stats(collection.id)
            counts = (state.counts()[0], stats.indexed)
            summary = CollectionStatus(
                name=collection.name,
                model=collection.model_id,
                dim=collection.dim,
                precision=collection.precision,
                indexed=stats.indexed,
                searchable=counts[0],
                failed=stats.failed,
                vectors=len(vectors := state.library.vectors(collection)),
                index=VectorIndexStatus(**vectors.describe()),
            )
        encoder = state.loaded_encoder
        return StatusResponse(
            version=pixseek.__version__,
            collection=summary,
            roots=state.roots.by_name,
            device=f"{encoder.device} ({encoder.precision})" if encoder else None,
            jobs=[job_info(job) for job in state.jobs.all()],
            rerankers=list(state.rerankers),
            watcher=watcher_status(),
            served=state.served(counts),
        )

    def watcher_status() -> WatcherStatus | None:
        if state.watcher is None:
            return None
        watched = state.watcher.state()
        return WatcherStatus(
            phase=watched.phase,
            roots=[
                WatchedRoot(path=state.roots.display(r.path), mode=r.mode, reason=r.reason)
                for r in watched.roots
            ],
            pending=watched.pending,
            last_error=None if watched.last_error is None else state.roots.redact(watched.last_error),
            last_error_at=watched.last_error_at,
            last_change_at=watched.last_change_at,
            totals=watched.totals,
        )

    @app.get("/health", tags=["service"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"])
    def prometheus() -> Response:
        """Prometheus text format: request counts and latencies, images indexed, jobs running."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    if WEB_DIR.is_dir():
        _install_web_page(app)
    return app


def _install_web_page(app: FastAPI) -> None:
    """The search page at / and its files under /static/. Not a StaticFiles mount at /: a mount
    there matched every path, so a method an API route lacks (OPTIONS /search) answered the mount's
    405 with ``Allow: GET, HEAD`` instead of the route's own."""
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="web")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def web_page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")


def _depth(offset: int, k: int, limit: int = SEARCH_MAX_K) -> int:
    """Results to fetch for the page at ``offset``: at most what the searcher returns, so the last
    pages the schema allows (offset 10000, k 200) are short or empty, not a 400."""
    return min(offset + k, limit)


def _upload_filters(text: str | None) -> Filters:
    """The upload's ``filters`` part: Filters as JSON, or none when absent, empty or ``null``."""
    if not text or text.strip() == "null":
        return Filters()
    return Filters.model_validate_json(text)


class _Observe:
    """Request metrics and the nosniff header, as a plain ASGI middleware: ``@app.middleware("http")``
    (Starlette's BaseHTTPMiddleware) runs every request through a task group and a memory stream,
    which costs more on the event loop than the handler's own HTTP work."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before it starts a response

        async def send_with_header(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).setdefault("X-Content-Type-Options", "nosniff")
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            route = scope.get("route")  # set by the router on this same scope
            self.metrics.observe(getattr(route, "path", "static"), scope["method"], status, started)


def _install_error_handlers(app: FastAPI, redact: Callable[[str], str]) -> None:
    """Errors a client can act on become 4xx with a one-line reason, never a 500. Reasons the
    server wrote go through ``redact`` (no server paths); refused paths are the client's own text."""

    def problem(status: int, detail: str) -> JSONResponse:
        # Client text echoed in a reason may hold lone surrogates, which UTF-8 cannot encode.
        clean = detail.encode("utf-8", "replace").decode("utf-8")
        return JSONResponse({"detail": clean}, status_code=status)

    def invalid(_request: Request, error: RequestValidationError | ValidationError) -> JSONResponse:
        """Validation errors as one line ('body.k: Input should be ...'), like every other error."""
        reasons = []
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"])
            reasons.append(f"{where}: {item['msg']}" if where else item["msg"])
        return problem(422, "; ".join(reasons))

    handlers = {
        PathRefusedError: 403,
        NotFoundError: 404,
        CollectionMismatchError: 409,
        PixseekError: 400,
        DatabaseError: 503,
    }
    for error_type, status in handlers.items():
        app.add_exception_handler(
            error_type,
            lambda _r, e, status=status: problem(
                status, str(e) if isinstance(e, PathRefusedError) else redact(str(e))
            ),
        )

    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        """Handlers' own HTTPExceptions (e.g. an OSError's text in a 422), redacted likewise."""
        if isinstance(error.detail, str):
            error.detail = redact(error.detail)
        return await http_exception_handler(request, error)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(ValidationError, invalid)
