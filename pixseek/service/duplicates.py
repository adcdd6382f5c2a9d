"""Duplicate groups of a collection: exact copies and near-duplicates, each with a suggested keeper.

* **Exact copies** share a content hash: one GROUP BY in SQL.
* **Near-duplicates** (resized, recompressed, slightly cropped, re-exposed, EXIF-rotated copies)
  need both signals. Every stored vector asks the collection's own index for its nearest
  neighbours, in batches (never all pairs: :mod:`pixseek.search.duplicates`,
  :mod:`pixseek.store.self_join`); a neighbour at cosine >= ``threshold`` is a candidate, and a
  candidate is kept when the two pictures' perceptual hashes (pHash,
  :mod:`pixseek.media.perceptual`) differ in at most ``max_distance`` of 64 bits. Neither signal
  alone will do (docs/search.md, "Duplicates", has the measurements): a model that learnt what
  pictures show puts another picture of the same scene as close as a copy (cosine alone: pairwise
  precision under 0.25 on the labelled set at any threshold), and the hash alone, over all pairs,
  merges plain pictures whose layouts of light and dark happen to agree (precision 0.45 at recall
  0.90). The embedding proposes and the hash confirms: precision 0.96 at recall 0.82 at the
  defaults with the better-trained shapes model (0.89 / 0.85 with the other).
* Accepted pairs and exact copies are joined into groups (union-find). Each group names a keeper:
  the most pixels, then the largest file, then the oldest date taken, then the lowest id.

Rows indexed before schema revision 0003 have no perceptual hash: it is computed here (read and
decode through the library's opener) for the images of candidate pairs only, and stored, so the
next run reads it. A file that cannot be read then is reported, and its pairs are not accepted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from pixseek.config import DUPLICATE_MAX_DISTANCE, DUPLICATE_THRESHOLD, Settings
from pixseek.errors import PixseekError
from pixseek.service.images import IndexedImage, image_of
from pixseek.store.records import CollectionInfo, SearchFilters
from pixseek.store.repository import Store

if TYPE_CHECKING:
    from pixseek.media.files import FileOpener
    from pixseek.search.duplicates import Pairs
    from pixseek.store.vector_index import VectorIndex

HASH_BITS = 64
EXACT = "exact"  # every member has the same bytes (content hash)
NEAR = "near"  # joined by accepted near-duplicate pairs (and maybe exact copies too)
QUERY_BATCH = 10_000  # stored vectors per k-NN batch


@dataclass(frozen=True)
class DuplicateGroup:
    kind: str  # EXACT or NEAR
    members: tuple[IndexedImage, ...]  # the suggested keeper first, then by path
    similarity: float  # the lowest cosine of the pairs that joined the group (1.0: exact copies)
    distance: int  # the largest perceptual-hash distance among them (0: exact copies)

    @property
    def keeper(self) -> IndexedImage:
        return self.members[0]


@dataclass(frozen=True)
class DuplicateReport:
    groups: list[DuplicateGroup]  # largest first, then by the keeper's path
    options: Options
    images: int  # stored vectors scanned
    candidates: int  # neighbour pairs at or above the threshold
    hashed: int  # perceptual hashes computed by this run (rows indexed before they were stored)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): not hashed
    seconds: float = 0.0


@dataclass(frozen=True)
class Options:
    """What to call a duplicate, and how much work to spend on finding them."""

    threshold: float = DUPLICATE_THRESHOLD  # cosine of a candidate pair, in (0, 1]
    max_distance: int = DUPLICATE_MAX_DISTANCE  # bits of 64 its perceptual hashes may differ in
    folders: tuple[str, ...] = ()  # only images under these (absolute paths); () for all
    workers: int = 2  # threads decoding files whose hash is not stored yet

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise PixseekError(f"--threshold must be a cosine similarity in (0, 1], got {self.threshold}")
        if not 0 <= self.max_distance <= HASH_BITS:
            raise PixseekError(
                f"--max-distance must be a number of bits in 0..{HASH_BITS}, got {self.max_distance}"
            )

    @classmethod
    def of(
        cls, settings: Settings, threshold: float | None, max_distance: int | None, folders: Sequence[str]
    ) -> Options:
        """The options asked for, the settings' where not."""
        return cls(
            settings.duplicate_threshold if threshold is None else threshold,
            settings.duplicate_max_distance if max_distance is None else max_distance,
            tuple(folders),
            settings.decode_workers,
        )


def find(
    store: Store,
    collection: CollectionInfo,
    vectors: VectorIndex,
    opener: FileOpener,
    options: Options,
    progress: Callable[[int, int], None] | None = None,
) -> DuplicateReport:
    """The duplicate groups among the collection's indexed images (only those under
    ``options.folders``, when given). ``progress(done, total)`` follows the scan of the vectors."""
    from pixseek.search.duplicates import UnionFind, near_pairs
    from pixseek.store.self_join import neighbour_search

    started = time.perf_counter()
    folders = options.folders
    allowed = store.filtered_ids(collection.id, SearchFilters(folders=folders)) if folders else None
    total = len(vectors) if allowed is None else len(allowed)
    chunks = _chunks(store, collection, allowed)
    pairs = near_pairs(
        chunks,
        neighbour_search(vectors),
        options.threshold,
        progress=(lambda done: progress(done, total)) if progress else None,
    )
    if allowed is not None:
        pairs = pairs.where(np.isin(pairs.first, allowed) & np.isin(pairs.second, allowed))
    hashes, hashed, unreadable = _perceptual_hashes(store, pairs.ids(), opener, options.workers)
    accepted, distances = _confirmed(pairs, hashes, options.max_distance)

    joined = UnionFind()
    in_scope = None if allowed is None else set(allowed.tolist())
    for group in store.content_groups(collection.id):
        joined.union_all(group if in_scope is None else [i for i in group if i in in_scope])
    for first, second in zip(accepted.first.tolist(), accepted.second.tolist(), strict=True):
        joined.union(first, second)
    groups = _describe(store, joined.groups(), accepted, distances)
    return DuplicateReport(
        groups=groups,
        options=options,
        images=total,
        candidates=len(pairs),
        hashed=hashed,
        unreadable=unreadable,
        seconds=time.perf_counter() - started,
    )


def _chunks(store: Store, collection: CollectionInfo, allowed: np.ndarray | None):
    for ids, matrix in store.iter_embeddings(collection.id, collection.dim, chunk=QUERY_BATCH):
        if allowed is None:
            yield ids, matrix
        else:
            keep = np.isin(ids, allowed)
            yield ids[keep], matrix[keep]


def _perceptual_hashes(
    store: Store, ids: np.ndarray, opener: FileOpener, workers: int
) -> tuple[dict[int, int], int, list[tuple[str, str]]]:
    """The hash of each of ``ids``: stored, or computed now and stored (rows indexed before
    revision 0003). Returns (hashes, how many computed, (path, reason) of files that failed)."""
    stored = store.perceptual_hashes(ids.tolist())
    hashes = {image_id: value for image_id, value in stored.items() if value is not None}
    missing = list(store.images(sorted(set(stored) - set(hashes))).values())
    if not missing:
        return hashes, 0, []
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="pixseek-phash") as pool:
        results = list(pool.map(lambda record: _hash_file(record.path, opener), missing))
    computed = {
        record.id: value for record, value in zip(missing, results, strict=True) if isinstance(value, int)
    }
    store.set_perceptual_hashes(computed)
    failed = [
        (record.path, value) for record, value in zip(missing, results, strict=True) if isinstance(value, str)
    ]
    return {**hashes, **computed}, len(computed), sorted(failed)


def _hash_file(path: str, opener: FileOpener) -> int | str:
    """The perceptual hash of the file at ``path``, or the reason it cannot be had."""
    from pixseek.media.decode import decode_image
    from pixseek.media.errors import DecodeError
    from pixseek.media.perceptual import HASH_MIN_SIDE, perceptual_hash

    try:  # draft-decoded (a JPEG at 1/2 to 1/8 scale): the hash needs 32 samples a side
        return perceptual_hash(decode_image(opener.read(path), min_side=HASH_MIN_SIDE).image)
    except FileNotFoundError:
        return "the file is gone; re-index its folder"
    except DecodeError as error:
        return error.reason
    except OSError as error:
        return f"unreadable: {error.strerror or error}"


def _confirmed(pairs: Pairs, hashes: dict[int, int], max_distance: int) -> tuple[Pairs, np.ndarray]:
    """The candidate pairs whose perceptual hashes differ in at most ``max_distance`` bits (a pair
    with a hash missing is not confirmed), and their distances."""
    from pixseek.media.perceptual import hamming

    missing = HASH_BITS + 1
    first = np.array([hashes.get(i, 0) for i in pairs.first.tolist()], dtype=np.int64)
    second = np.array([hashes.get(i, 0) for i in pairs.second.tolist()], dtype=np.int64)
    known = np.array(
        [
            a in hashes and b in hashes
            for a, b in zip(pairs.first.tolist(), pairs.second.tolist(), strict=True)
        ],
        dtype=bool,
    )
    distances = np.where(known, hamming(first, second), missing) if len(pairs) else np.empty(0, np.int64)
    keep = distances <= max_distance
    return pairs.where(keep), distances[keep]


def _describe(
    store: Store, groups: list[list[int]], accepted: Pairs, distances: np.ndarray
) -> list[DuplicateGroup]:
    """Groups of ids as the front ends show them: members with their metadata, keeper first,
    why they formed; largest group first, then by the keeper's path."""
    records = store.images([image_id for group in groups for image_id in group])
    group_of = {image_id: number for number, group in enumerate(groups) for image_id in group}
    lowest = [1.0] * len(groups)
    farthest = [0] * len(groups)
    for first, similarity, distance in zip(
        accepted.first.tolist(), accepted.similarity.tolist(), distances.tolist(), strict=True
    ):
        number = group_of[first]
        lowest[number] = min(lowest[number], float(similarity))
        farthest[number] = max(farthest[number], int(distance))
    described = []
    for number, group in enumerate(groups):
        members = sorted((image_of(records[i]) for i in group if i in records), key=lambda m: m.path)
        if len(members) < 2:  # removed by a concurrent writer since the scan
            continue
        keeper = min(members, key=keeper_rank)
        ordered = (keeper, *(member for member in members if member is not keeper))
        if len({member.content_hash for member in members}) == 1:  # the same bytes, whatever FAISS says
            described.append(DuplicateGroup(EXACT, ordered, 1.0, 0))
        else:
            described.append(DuplicateGroup(NEAR, ordered, lowest[number], farthest[number]))
    return sorted(described, key=lambda group: (-len(group.members), group.keeper.path, group.keeper.id))


def keeper_rank(image: IndexedImage) -> tuple[int, int, bool, datetime, int]:
    """The suggested keeper sorts first: most pixels, largest file, oldest date taken (an image
    without one after those with one), lowest id."""
    pixels = (image.width or 0) * (image.height or 0)
    return (-pixels, -image.size, image.taken_at is None, image.taken_at or datetime.max, image.id)


class Memo:
    """The last report per question (collection state, options, folders): a server's pages of
    ``GET /duplicates`` ask the same one again and again, and a change to the collection (its
    generation) asks anew. One computation at a time: a second request for it waits for the first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[tuple, DuplicateReport] | None = None

    def get(self, key: tuple, compute: Callable[[], DuplicateReport]) -> DuplicateReport:
        with self._lock:
            if self._last is None or self._last[0] != key:
                self._last = (key, compute())
            return self._last[1]
