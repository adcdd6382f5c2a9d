"""Collections as the user manages them: list, build one beside the active one, activate, remove.

Changing the model of a library is building a second collection with the new model while the
active one keeps answering, then activating it: one SQL transaction that every process sees at
once (pixseek.store.collection_states). The build reuses what does not depend on the model: the
folders the active collection was indexed from, its OCR setting and the words OCR already read
(matched by content hash), so only the embedding is paid again. A build interrupted at any point
(even ``kill -9``) leaves the active collection untouched and the new one 'building'; building it
again resumes where it stopped, like any indexing run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pixseek.errors import ConflictError, NotFoundError, PixseekError
from pixseek.store.collection_states import CollectionBusyError
from pixseek.store.models import COLLECTION_BUILDING, COLLECTION_READY
from pixseek.store.records import CollectionInfo, OcrSetting
from pixseek.store.repository import Store

if TYPE_CHECKING:
    from pixseek.embedding import Encoder
    from pixseek.indexer.pipeline import IndexReport
    from pixseek.library import Library


@dataclass(frozen=True)
class CollectionEntry:
    """One collection as ``pixseek collections`` and ``GET /collections`` list it."""

    name: str
    model: str
    dim: int
    precision: str
    state: str  # ready or building
    active: bool
    indexed: int
    failed: int
    ocr: OcrSetting | None


def entries(store: Store, active_name: str) -> list[CollectionEntry]:
    """Every collection, ``active_name`` (what a command without ``-c`` uses) marked active."""
    found = []
    for info in store.collections():
        stats = store.stats(info.id)
        found.append(
            CollectionEntry(
                name=info.name,
                model=info.model_id,
                dim=info.dim,
                precision=info.precision,
                state=info.state,
                active=info.name == active_name,
                indexed=stats.indexed,
                failed=stats.failed,
                ocr=info.ocr,
            )
        )
    return found


@dataclass(frozen=True)
class BuildPlan:
    """A collection to build: its (empty or half-built) record, its model, and what it reuses."""

    collection: CollectionInfo
    encoder: Encoder
    roots: tuple[Path, ...]
    donor: CollectionInfo | None  # the collection whose OCR words are reused


def plan_build(
    library: Library, encoder: Encoder, roots: Sequence[Path] = (), donor_name: str | None = None
) -> BuildPlan:
    """Create (or find half-built) ``library``'s collection for ``encoder`` in state 'building'.

    ``roots`` default to the folders the donor (the active collection) was indexed from. A
    collection that is already built is refused: it would be indexing, not building (use
    ``pixseek index -c NAME``)."""
    name = library.collection_name
    existing = library.store.collection(name)
    if existing is not None and existing.state == COLLECTION_READY:
        raise CollectionExistsError(
            f"collection {name!r} already exists; `pixseek index -c {name} PATH` updates it"
        )
    donor = library.store.collection(donor_name) if donor_name and donor_name != name else None
    if not roots:
        roots = tuple(Path(root) for root in library.roots(donor)) if donor is not None else ()
    if not roots:
        raise PixseekError("no folders to build from: name them, or build beside a collection that has some")
    missing = [str(root) for root in roots if not root.exists()]
    if missing:
        raise PixseekError(f"no such folder: {', '.join(missing)}")
    collection = library.store.ensure_collection(
        name,
        model_id=encoder.model_id,
        fingerprint=encoder.fingerprint,
        dim=encoder.dim,
        precision=encoder.precision,
        state=COLLECTION_BUILDING,
    )
    if donor is not None and donor.ocr_engine and existing is None:
        library.store.set_collection_ocr(collection.id, donor.ocr_engine, donor.ocr_languages)
    return BuildPlan(collection, encoder, tuple(roots), donor)


def build(
    library: Library, plan: BuildPlan, progress: Callable[[int, int], None] | None = None
) -> IndexReport:
    """Index ``plan``'s roots into its collection (OCR words reused from the donor), build the
    vector index its size calls for, then mark it ready."""
    indexer = library.indexer(plan.encoder)
    indexer.text_donor = plan.donor.id if plan.donor is not None else None
    # Whichever server process builds it saves it and builds its base: with `serve --workers N`
    # that may be a reader, whose saves are otherwise off (the writer never writes this one).
    indexer.vectors.builds_here = True
    report = indexer.run(list(plan.roots), progress=progress)
    library.finish_vectors(plan.collection)
    library.store.set_collection_state(plan.collection.id, COLLECTION_READY)
    return report


def check_removable(store: Store, name: str, active_name: str) -> CollectionInfo:
    """The collection ``name`` if it may be deleted: it exists and is not the active one."""
    info = store.collection(name)
    if info is None:
        raise NotFoundError(f"no collection {name!r}")
    if name == active_name:
        raise CollectionBusyError(
            f"collection {name!r} is the active one: activate another first "
            "(`pixseek collections activate NAME`)"
        )
    return info


class CollectionExistsError(ConflictError):
    """A collection of that name exists already."""
