"""A re-ranker with its feature cache: candidate files in, one probability (or a reason) out each.

Cached features are used when the file on disk is still the one that was indexed (same size and
mtime as its record, so its content hash still holds); otherwise the file is read, hashed, decoded
and run through the vision tower in batches, and the result is cached. A file that vanished or no
longer decodes gets no score and a reason instead, and the other candidates are scored as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from pixseek.media.decode import decode_image
from pixseek.media.errors import DecodeError
from pixseek.media.files import FileOpener
from pixseek.media.hashing import content_hash
from pixseek.search.rerank.base import BATCH_SIZE, Reranker
from pixseek.search.rerank.cache import FeatureCache
from pixseek.store.models import ImageRecord

log = logging.getLogger(__name__)

VANISHED = "file vanished"


@dataclass(frozen=True)
class ImageRef:
    """Where a candidate's pixels are, and what the index knew about them."""

    path: str
    content_hash: str | None = None
    size: int | None = None
    mtime_ns: int | None = None

    @classmethod
    def from_record(cls, record: ImageRecord) -> ImageRef:
        return cls(record.path, record.content_hash, record.size, record.mtime_ns)


@dataclass
class Features:
    """Per candidate: features or None, and why not; plus where the features came from."""

    arrays: list[np.ndarray | None]
    errors: list[str | None]
    cache_hits: int = 0
    computed: int = 0


class _Prepared(NamedTuple):
    cached: np.ndarray | None = None
    key: str = ""
    pixels: np.ndarray | None = None
    error: str | None = None


@dataclass
class Scores:
    probabilities: list[float | None]
    errors: list[str | None]
    cache_hits: int = 0
    computed: int = 0


@dataclass
class FillReport:
    images: int = 0
    already_cached: int = 0
    computed: int = 0
    over_budget: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


class CachedScorer:
    """``reranker`` with ``cache`` (None: no cache); safe to share between threads. Candidate files
    are read through ``opener`` (a server's is confined to its library roots)."""

    def __init__(self, reranker: Reranker, cache: FeatureCache | None, opener: FileOpener | None = None):
        self.reranker = reranker
        self.cache = cache
        self.opener = opener or FileOpener()

    @property
    def name(self) -> str:
        return self.reranker.name

    def score(self, text: str, refs: Sequence[ImageRef]) -> Scores:
        """Match probability of ``text`` with each candidate, BATCH_SIZE pairs per forward.

        Candidates go through in chunks of BATCH_SIZE, features then scores, so memory stays
        bounded by one chunk whatever k is (BridgeTower features are 3 MB per image).
        """
        scores = Scores([None] * len(refs), [None] * len(refs))
        for start in range(0, len(refs), BATCH_SIZE):
            found = self.features(refs[start : start + BATCH_SIZE])
            scores.cache_hits += found.cache_hits
            scores.computed += found.computed
            scores.errors[start : start + len(found.errors)] = found.errors
            ready = [(i, array) for i, array in enumerate(found.arrays) if array is not None]
            if ready:
                batch = np.stack([array for _, array in ready])
                probabilities = self.reranker.score_features(text, batch)
                for (i, _), probability in zip(ready, probabilities, strict=True):
                    scores.probabilities[start + i] = float(probability)
        return scores

    def features(self, refs: Sequence[ImageRef]) -> Features:
        """Each candidate's features, from the cache or computed (and then cached) in batches."""
        found = Features([None] * len(refs), [None] * len(refs))
        pending: list[tuple[int, str, np.ndarray]] = []
        for i, ref in enumerate(refs):
            prepared = self._prepare(ref)
            if prepared.error is not None:
                found.errors[i] = prepared.error
            elif prepared.cached is not None:
                found.arrays[i] = prepared.cached
                found.cache_hits += 1
            elif prepared.pixels is not None:
                pending.append((i, prepared.key, prepared.pixels))
                if len(pending) == BATCH_SIZE:
                    self._compute(pending, found)
                    pending = []
        if pending:
            self._compute(pending, found)
        return found

    def fill(
        self, refs: Iterable[ImageRef], total: int, progress: Callable[[int, int], None] | None = None
    ) -> FillReport:
        """Cache the features of ``refs`` ahead of searches, stopping at the byte budget.

        Filling past the budget would only evict what was just computed, so images beyond it are
        counted as ``over_budget`` and left to be cached lazily when they turn up as candidates.
        """
        if self.cache is None:
            raise ValueError("this re-ranker has no cache to fill")
        report = FillReport()
        room = self.cache.max_bytes // (self.reranker.feature_bytes + 128)  # + the .npy header
        batch: list[ImageRef] = []

        def flush() -> None:
            found = self.features(batch)
            report.already_cached += found.cache_hits
            report.computed += found.computed
            report.failed.extend((ref.path, e) for ref, e in zip(batch, found.errors, strict=True) if e)
            batch.clear()

        for ref in refs:
            report.images += 1
            cached = ref.content_hash is not None and ref.content_hash in self.cache
            if len(self.cache) + len(batch) >= room and not cached:
                report.over_budget += 1
            else:
                batch.append(ref)
                if len(batch) == BATCH_SIZE:
                    flush()
            if progress:
                progress(report.images, total)
        if batch:
            flush()
        return report

    # ---- internals ------------------------------------------------------------------------------
    def _prepare(self, ref: ImageRef) -> _Prepared:
        """Cached features when the file is unchanged since indexing, else its key and pixels.

        One open: the size and mtime that vouch for the cached features and the bytes read are
        those of the same file, whatever is renamed or swapped at that path meanwhile.
        """
        try:
            with self.opener.open(ref.path) as opened:
                stat = opened.stat
                unchanged = (stat.st_size, stat.st_mtime_ns) == (ref.size, ref.mtime_ns)
                if self.cache is not None and ref.content_hash and unchanged:
                    cached = self.cache.get(ref.content_hash)
                    if cached is not None:
                        return _Prepared(cached=cached)
                data = opened.read_image_bytes(self.opener.max_bytes)
        except FileNotFoundError:
            return _Prepared(error=VANISHED)
        except DecodeError as error:
            return _Prepared(error=f"unreadable: {error.reason}")
        except OSError as error:
            return _Prepared(error=f"unreadable: {error.strerror or error}")
        key = content_hash(data)
        if self.cache is not None and key != ref.content_hash:  # changed since indexing
            cached = self.cache.get(key)
            if cached is not None:
                return _Prepared(cached=cached)
        try:
            # A full decode, not the JPEG draft that indexing uses: the draft's DCT downscaling
            # changes the pixels the processor sees and so the probabilities --min-score cuts on
            # (by up to 4.6e-3 with full-size BridgeTower and 1024x768 JPEGs), while the full
            # decode costs tens of milliseconds once per image, before its features are cached.
            decoded = decode_image(data)
            return _Prepared(key=key, pixels=self.reranker.preprocess_image(decoded.image))
        except DecodeError as error:
            return _Prepared(error=f"unreadable: {error.reason}")
        except Exception as error:  # a processor bug on one odd image must not stop the search
            log.exception("preprocessing %s for re-ranking failed", ref.path)
            return _Prepared(error=f"preprocessing failed: {error}")

    def _compute(self, pending: list[tuple[int, str, np.ndarray]], found: Features) -> None:
        arrays = self.reranker.image_features(np.stack([pixels for _, _, pixels in pending]))
        for (i, key, _), array in zip(pending, arrays, strict=True):
            found.arrays[i] = array
            found.computed += 1
            if self.cache is not None:
                self.cache.put(key, array)
