"""Search: by text or a composed query (optionally re-ranked), by an uploaded image (or a region of
it, with more terms), and "more like this".

The search itself is :meth:`pixseek.library.Library.search`, the CLI's too; what is here is the
HTTP side: folders named by library root, pages by ``offset``, uploads bounded in size and pixels.
Handlers are plain ``def``: FastAPI runs them in its thread pool, so the model never blocks the
event loop.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from pixseek.api.deps import ImageId, State
from pixseek.api.errors import ERRORS, PATH_ERRORS, with_problems
from pixseek.api.presenters import json_response, page
from pixseek.api.schemas import (
    MAX_K,
    MAX_OFFSET,
    CropBox,
    Filters,
    ImageSearchForm,
    SearchRequest,
    SearchResponse,
    Term,
    TextTerm,
)
from pixseek.api.state import AppState
from pixseek.library import Library, SearchFilters
from pixseek.media.decode import decode_image
from pixseek.media.errors import DecodeError
from pixseek.search.query import Crop, QueryTerm
from pixseek.vocabulary import Cutoff, SearchMode, SortOrder, TermKind

router = APIRouter(tags=["search"])
UPLOAD_FIELDS = frozenset({"file", "k", "offset", "filters", "terms", "crop", "sort", "cutoff", "mode"})
JSON_PARTS = ("filters", "terms", "crop")


async def only_upload_fields(request: Request) -> None:
    """An upload's form holds each declared part once and nothing else: a misspelt or nameless part
    ("ofset", an array sent as repeated parts) would otherwise be dropped, or one copy silently
    chosen, and a default used without a word. FastAPI has parsed the form already (cached)."""
    form = await request.form()
    names = list(form.keys())
    unexpected = sorted(set(names) - UPLOAD_FIELDS)
    repeated = sorted(name for name in set(names) & UPLOAD_FIELDS if len(form.getlist(name)) > 1)
    if unexpected or repeated:
        name = (unexpected or repeated)[0]
        reason = "unexpected form part" if unexpected else "form part given more than once"
        raise RequestValidationError([{"type": "extra_forbidden", "loc": ("body", name), "msg": reason}])
    for name in JSON_PARTS:
        if form.get(name) == "":  # FastAPI reads an empty part as absent; it is no JSON
            message = "empty part: send JSON, or null, or leave the part out"
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body", name), "msg": message}])


@router.post("/search", response_model=SearchResponse, responses=PATH_ERRORS)
def search(request: SearchRequest, state: State) -> Response:
    """Text search, in any language the collection's model knows, or a composed query: ``terms``
    add texts and indexed images (or regions of them), each weighted, a negative weight pushing
    results away. Optionally cut by the adaptive cutoff, sorted by date or path, or re-ranked by the
    BridgeTower/BLIP-2 image-text-matching heads, which score the positive texts (results then
    ordered by ``final_score``)."""
    started = time.perf_counter()
    depth = request.offset + request.k
    library = state.collections.library(request.collection)
    outcome = library.search(
        request.query,
        terms=query_terms(request.terms, state),
        k=request.k,
        depth=depth,
        filters=search_filters(request.filters, state, library),
        rerank=request.rerank,
        rerank_k=request.rerank_k,
        min_score=request.min_score,
        sort=request.sort,
        cutoff=request.cutoff,
        mode=request.mode,
    )
    response = page(outcome, request.offset, request.k, started, state.roots)
    if outcome.rerank_k is not None and (len(outcome.hits) < depth or depth >= outcome.rerank_k):
        response.next_offset = None  # pages stop at the rerank_k candidates re-ranking sees
    return json_response(response)


@router.post(
    "/search/image",
    response_model=SearchResponse,
    responses=with_problems(PATH_ERRORS, 413),
    dependencies=[Depends(only_upload_fields)],
)
def search_image(
    state: State,
    file: Annotated[UploadFile, File(description="The query image (JPEG, PNG, WebP, ...)")],
    k: Annotated[int, Form(ge=1, le=MAX_K)] = 24,
    offset: Annotated[int, Form(ge=0, le=MAX_OFFSET)] = 0,
    filters: Annotated[str | None, Form(description="Filters as JSON, like in POST /search")] = None,
    terms: Annotated[
        str | None, Form(description="More terms as a JSON array, like POST /search's terms")
    ] = None,
    crop: Annotated[
        str | None,
        Form(
            description='Search by this region of the upload, as JSON: {"x": .., "y": .., '
            '"width": .., "height": .., "unit": "px" or "fraction"}'
        ),
    ] = None,
    sort: Annotated[SortOrder, Form(description="As in POST /search")] = SortOrder.RELEVANCE,
    cutoff: Annotated[Cutoff | None, Form(description="As in POST /search")] = None,
    mode: Annotated[SearchMode | None, Form(description="As in POST /search (for the text terms)")] = None,
) -> Response:
    """Search by an uploaded image, or a region of it, optionally with more terms (the upload is
    the first term, weight 1). Size and pixel count are capped; nothing is fetched by URL."""
    started = time.perf_counter()
    parts = _upload_parts(filters, terms, crop)
    settings = state.settings
    data = file.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(413, f"upload larger than {settings.max_upload_bytes} bytes")
    try:
        image = decode_image(data, max_pixels=settings.max_upload_pixels).image
    except DecodeError as error:
        raise HTTPException(400, f"not a usable image: {error.reason}") from None
    outcome = state.library.search(
        image=image,
        crop=_crop(parts.crop),
        terms=query_terms(parts.terms, state),
        k=k,
        depth=offset + k,
        filters=search_filters(parts.filters, state),
        sort=sort,
        cutoff=cutoff,
        mode=mode,
    )
    return json_response(page(outcome, offset, k, started, state.roots))


@router.get("/images/{image_id}/similar", response_model=SearchResponse, responses=ERRORS)
def similar(
    image_id: ImageId,
    state: State,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 24,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Response:
    """More like this: neighbours of an indexed image (itself excluded), from its stored vector."""
    started = time.perf_counter()
    state.served_image(image_id)
    outcome = state.library.search(
        like=image_id, k=k, depth=offset + k, filters=search_filters(Filters(), state)
    )
    return json_response(page(outcome, offset, k, started, state.roots))


def query_terms(terms: list[Term], state: AppState) -> list[QueryTerm]:
    """The request's terms for the search service; an image a term names must be one this server
    serves (404 otherwise, like GET /images/{id})."""
    converted = []
    for term in terms:
        if isinstance(term, TextTerm):
            converted.append(QueryTerm(TermKind.TEXT, term.text, term.weight))
        else:
            state.served_image(term.image_id)
            converted.append(QueryTerm(TermKind.INDEXED, term.image_id, term.weight, _crop(term.crop)))
    return converted


def _crop(box: CropBox | None) -> Crop | None:
    if box is None:
        return None
    return Crop(box.x, box.y, box.width, box.height, fractions=box.unit == "fraction")


def search_filters(filters: Filters, state: AppState, library: Library | None = None) -> SearchFilters:
    """The request's filters, with folders named by library root resolved inside it."""
    return SearchFilters(
        folders=state.scope(filters.folders, library),
        taken_after=filters.taken_after,
        taken_before=filters.taken_before,
        min_width=filters.min_width,
        min_height=filters.min_height,
        formats=tuple(filters.formats),
    )


def _upload_parts(filters: str | None, terms: str | None, crop: str | None) -> ImageSearchForm:
    """The upload's JSON parts, each absent or ``null`` for its default (an empty part is no JSON:
    422, as the schema says)."""
    values = {}
    for name, text in (("filters", filters), ("terms", terms), ("crop", crop)):
        if text is None or text.strip() == "null":
            continue
        try:
            values[name] = json.loads(text)
        except ValueError:
            message = "not JSON: send it as JSON, or null, or leave the part out"
            problem = {"type": "json_invalid", "loc": ("body", name), "msg": message}
            raise RequestValidationError([problem]) from None
    return ImageSearchForm.model_validate(values)
