"""Concurrent text queries share one forward pass of the text tower.

A server that runs one forward per request thread makes N forwards compete for the same cores,
each with its own intra-op threads, and latency explodes under load; one forward over N queries
(padded to the longest) costs little more than one query. Requests that arrive while a forward
runs are queued and taken together by the next one, so an idle server adds no wait at all.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pixseek.embedding import Encoder


@dataclass
class _Pending:
    texts: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class TextQueryBatcher:
    """Wraps an encoder: ``embed_texts`` is batched across threads, everything else passes through."""

    def __init__(self, encoder: Encoder, *, max_batch: int = 64):
        self.encoder = encoder
        self.max_batch = max_batch
        self.forwards = 0  # model calls made, for metrics and tests
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="pixseek-text-batcher", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str):
        return getattr(self.encoder, name)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        pending = _Pending(list(texts))
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result

    def close(self) -> None:
        self._queue.put(None)

    def _loop(self) -> None:
        while (first := self._queue.get()) is not None:
            batch, count = [first], len(first.texts)
            while count < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:  # closing: finish this batch, then stop
                    self._queue.put(None)
                    break
                batch.append(item)
                count += len(item.texts)
            self._run(batch)

    def _run(self, batch: list[_Pending]) -> None:
        try:
            vectors = self.encoder.embed_texts([text for pending in batch for text in pending.texts])
            self.forwards += 1
        except BaseException as error:  # every waiting request gets the error, none hangs
            for pending in batch:
                pending.error = error
                pending.done.set()
            return
        start = 0
        for pending in batch:
            pending.result = vectors[start : start + len(pending.texts)]
            start += len(pending.texts)
            pending.done.set()
