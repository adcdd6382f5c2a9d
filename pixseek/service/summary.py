"""What ``pixseek status`` and the server's ``/status`` report about a collection.

``pixseek status`` must answer in a fraction of a second without a model or a FAISS load, so its
summary reads the saved index's manifest; a server already holds the index in memory and reports
the live one (delta, tombstones, background maintenance).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pixseek.service import folders
from pixseek.store.records import CollectionInfo, IndexDescription, OcrSetting, SavedIndexSummary
from pixseek.store.repository import Store

if TYPE_CHECKING:
    from pixseek.store.vector_index import VectorIndex


@dataclass(frozen=True)
class CollectionSummary:
    """One collection as ``pixseek status`` reports it."""

    name: str
    model: str
    fingerprint: str
    dim: int
    precision: str
    indexed: int
    failed: int
    last_indexed: datetime | None
    index_dir: str
    index: SavedIndexSummary  # from the saved manifest: no FAISS load
    roots: list[str]
    excluded: list[str]
    failures: list[tuple[str, str]]
    ocr: OcrSetting | None = None  # what `index --ocr` recorded


@dataclass(frozen=True)
class LiveCollection:
    """The collection a long-running process searches, with the index it has loaded."""

    name: str
    model: str
    dim: int
    precision: str
    indexed: int
    failed: int
    vectors: int  # searchable now
    index: IndexDescription  # the loaded index
    excluded: list[str]  # what `pixseek rm` keeps out (absolute paths)
    ocr: OcrSetting | None = None  # what `index --ocr` recorded


def summaries(store: Store, index_path: Callable[[CollectionInfo], Path]) -> list[CollectionSummary]:
    """Every collection: model, counts, failures, saved index, roots and exclusions."""
    from pixseek.store.index_folder import describe_saved

    result = []
    for info in store.collections():
        stats = store.stats(info.id)
        result.append(
            CollectionSummary(
                name=info.name,
                model=info.model_id,
                fingerprint=info.model_fingerprint,
                dim=info.dim,
                precision=info.precision,
                indexed=stats.indexed,
                failed=stats.failed,
                last_indexed=stats.last_indexed,
                index_dir=str(index_path(info)),
                index=describe_saved(index_path(info)),
                roots=folders.roots(store, info),
                excluded=folders.exclusions(store, info),
                failures=store.failures(info.id),
                ocr=info.ocr,
            )
        )
    return result


def live(store: Store, collection: CollectionInfo, vectors: VectorIndex) -> LiveCollection:
    stats = store.stats(collection.id)
    return LiveCollection(
        name=collection.name,
        model=collection.model_id,
        dim=collection.dim,
        precision=collection.precision,
        indexed=stats.indexed,
        failed=stats.failed,
        vectors=len(vectors),
        index=vectors.describe(),
        excluded=folders.exclusions(store, collection),
        ocr=collection.ocr,
    )
