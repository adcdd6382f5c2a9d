"""Collections over the API: list them, build one beside the active one (a background build with
progress), activate it for every server process, delete one.

Changing the model without downtime: ``POST /collections`` with the new model, poll ``GET
/collections`` until its build is done (searches keep running on the active collection), then
``POST /collections/{name}/activate``: the next search runs on the new collection with its model.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends

from pixseek.api.deps import State, require_key
from pixseek.api.errors import ERRORS, PATH_ERRORS, with_problems
from pixseek.api.schemas import (
    BuildStatus,
    CollectionItem,
    CollectionName,
    CreateCollectionRequest,
    OcrStatus,
)
from pixseek.api.state import AppState
from pixseek.errors import PixseekError

router = APIRouter(tags=["collections"])


@router.get("/collections", response_model=list[CollectionItem], responses=ERRORS)
def list_collections(state: State) -> list[CollectionItem]:
    """Every collection: model, state (building or ready), size, OCR, and this server's build of it."""
    return _items(state)


@router.post(
    "/collections",
    response_model=CollectionItem,
    status_code=202,
    responses=with_problems(PATH_ERRORS, 401, 409),
    dependencies=[Depends(require_key)],
)
def create_collection(request: CreateCollectionRequest, state: State) -> CollectionItem:
    """Build a collection with ``model`` from the library roots (or ``paths`` inside them) in the
    background, reusing the active collection's OCR words; the active collection keeps answering.
    A collection left half-built (a crash, a restart) resumes when created again with its model."""
    if not state.roots:
        raise PixseekError("no library roots configured (pixseek serve --root PATH)")
    paths = [Path(state.roots.existing(path)) for path in request.paths] if request.paths else []
    state.collections.start_build(request.name, request.model, paths or [Path(p) for p in state.roots.paths])
    return _named(state, request.name)


@router.post(
    "/collections/{name}/activate",
    response_model=CollectionItem,
    responses=with_problems(ERRORS, 401, 409),
    dependencies=[Depends(require_key)],
)
def activate_collection(name: CollectionName, state: State) -> CollectionItem:
    """Make ``name`` the collection every request without one uses, in every server process and
    CLI command; its model and index load first, so no request waits for them. 409 while it builds."""
    state.activate(name)
    return _named(state, name)


@router.delete(
    "/collections/{name}",
    status_code=204,
    responses=with_problems(ERRORS, 401, 409),
    dependencies=[Depends(require_key)],
)
def delete_collection(name: CollectionName, state: State) -> None:
    """Delete ``name`` and its index (image files stay). 409 for the active one or one building here."""
    state.collections.remove(name)


def _named(state: AppState, name: str) -> CollectionItem:
    (item,) = [item for item in _items(state) if item.name == name]
    return item


def _items(state: AppState) -> list[CollectionItem]:
    # Builds first, then SQL: a build reads "done" only after it marked its collection ready, so
    # this order never shows a finished build of a collection still building.
    builds = {
        name: BuildStatus(state=build.state, done=build.done, total=build.total, error=build.error)
        for name, build in list(state.collections.builds.items())
    }
    return [
        CollectionItem(
            name=entry.name,
            model=entry.model,
            dim=entry.dim,
            precision=entry.precision,
            state="ready" if entry.state == "ready" else "building",
            active=entry.active,
            indexed=entry.indexed,
            failed=entry.failed,
            ocr=OcrStatus(engine=entry.ocr.engine, languages=[*entry.ocr.languages]) if entry.ocr else None,
            build=builds.get(entry.name),
        )
        for entry in state.collections.first.collection_entries()
    ]
