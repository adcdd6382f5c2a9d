"""Concurrent queries share one model forward and one FAISS call.

A server that runs one forward (or one index scan) per request thread makes N of them compete for
the same cores, each with its own intra-op threads, and latency explodes under load; one forward
over N queries (padded to the longest) costs little more than one query, and one FAISS call over
N queries is a matrix product instead of N scans of the same memory (at 1M vectors a scan is
memory-bound: batches of 16 run ~7x the queries per second of single ones, project notes).

Requests that arrive while a batch runs are queued and taken together by the next one, so an idle
server adds no wait; ``max_wait`` optionally holds the first request of a batch a bounded time for
company, trading that much latency for fuller batches.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from pixseek.embedding import Encoder
from pixseek.search.vector_search import VectorSearch

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    size: int
    done: threading.Event = field(default_factory=threading.Event)
    result: Result | None = None
    error: BaseException | None = None


class MicroBatcher(Generic[Item, Result]):
    """Runs ``run_batch`` on the items of concurrent ``submit`` calls, in one worker thread."""

    def __init__(
        self,
        run_batch: Callable[[list[Item]], list[Result]],
        *,
        max_batch: int = 64,
        max_wait: float = 0.0,
        name: str = "pixseek-batcher",
    ):
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.batches = 0  # calls of run_batch, for metrics and tests
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item, size: int = 1) -> Result:
        """``size``: how much of ``max_batch`` the item takes (e.g. its number of texts)."""
        pending: _Pending[Item, Result] = _Pending(item, size)
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]  # set together with done, when no error

    def close(self) -> None:
        self._queue.put(None)

    def _loop(self) -> None:
        while (first := self._queue.get()) is not None:
            batch, count = [first], first.size
            deadline = time.monotonic() + self.max_wait
            while count < self.max_batch:
                try:
                    timeout = deadline - time.monotonic()
                    item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:  # closing: finish this batch, then stop
                    self._queue.put(None)
                    break
                batch.append(item)
                count += item.size
            self._run(batch)

    def _run(self, batch: list[_Pending]) -> None:
        try:
            results = self._run_batch([pending.item for pending in batch])
            self.batches += 1
        except BaseException as error:  # every waiting request gets the error, none hangs
            for pending in batch:
                pending.error = error
                pending.done.set()
            return
        for pending, result in zip(batch, results, strict=True):
            pending.result = result
            pending.done.set()


class TextQueryBatcher:
    """An :class:`Encoder` whose ``embed_texts`` is batched across threads; the rest is the wrapped
    encoder's own (image queries are single uploads: nothing to batch)."""

    def __init__(self, encoder: Encoder, *, max_batch: int = 64):
        self.encoder = encoder
        self.model_id, self.fingerprint, self.dim = encoder.model_id, encoder.fingerprint, encoder.dim
        self.precision = encoder.precision
        self.image_min_side = encoder.image_min_side
        self.preprocess_image = encoder.preprocess_image
        self.embed_pixels = encoder.embed_pixels
        self.embed_images = encoder.embed_images
        self._batcher: MicroBatcher[list[str], np.ndarray] = MicroBatcher(
            self._embed, max_batch=max_batch, name="pixseek-text-batcher"
        )

    @property
    def runtime(self) -> str:
        return self.encoder.runtime

    @property
    def forwards(self) -> int:
        return self._batcher.batches

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._batcher.submit(list(texts), size=max(len(texts), 1))

    def close(self) -> None:
        self._batcher.close()

    def _embed(self, batches: list[list[str]]) -> list[np.ndarray]:
        vectors = self.encoder.embed_texts([text for texts in batches for text in texts])
        bounds = np.cumsum([0, *(len(texts) for texts in batches)])
        return [vectors[start:end] for start, end in itertools.pairwise(bounds)]


class VectorSearchBatcher:
    """A :class:`VectorSearch` in front of another: unfiltered single-query searches from concurrent
    requests become one FAISS call over all of them (top max-k, then each request's prefix);
    filtered or multi-query searches pass straight through."""

    def __init__(self, vectors: VectorSearch, *, max_batch: int = 64, max_wait: float = 0.0):
        self.vectors = vectors
        self._batcher: MicroBatcher[tuple[np.ndarray, int], tuple[np.ndarray, np.ndarray]] = MicroBatcher(
            self._search, max_batch=max_batch, max_wait=max_wait, name="pixseek-search-batcher"
        )

    @property
    def dim(self) -> int:
        return self.vectors.dim

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def searches(self) -> int:
        return self._batcher.batches

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.vectors.dim)
        if allowed_ids is not None or len(queries) != 1:
            return self.vectors.search(queries, k, allowed_ids)
        return self._batcher.submit((queries[0], k))

    def close(self) -> None:
        self._batcher.close()

    def _search(self, items: list[tuple[np.ndarray, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        scores, ids = self.vectors.search(np.stack([query for query, _ in items]), max(k for _, k in items))
        return [(scores[i : i + 1, :k], ids[i : i + 1, :k]) for i, (_, k) in enumerate(items)]
