"""Concurrent text queries batched into shared forwards give the same vectors as one by one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pixseek.embedding import load_encoder
from pixseek.search.batching import TextQueryBatcher

QUERIES = ["a cat", "a red car on a long road", "ein Hund", "un chat", "mountains", "a page of text"] * 4


class SlowEncoder:
    """The real encoder, slowed so that concurrent requests pile up while a forward runs."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.calls = 0

    def embed_texts(self, texts):
        self.calls += 1
        time.sleep(0.05)
        return self.encoder.embed_texts(texts)


def test_concurrent_queries_share_forwards_and_get_their_own_vectors(clip_dir: Path) -> None:
    encoder = load_encoder(str(clip_dir), device="cpu", precision="fp32")
    expected = {text: encoder.embed_texts([text])[0] for text in set(QUERIES)}
    slow = SlowEncoder(encoder)
    batcher = TextQueryBatcher(slow)
    results: dict[int, np.ndarray] = {}

    def ask(i: int) -> None:
        results[i] = batcher.embed_texts([QUERIES[i]])[0]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(QUERIES))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    for i, text in enumerate(QUERIES):
        np.testing.assert_allclose(results[i], expected[text], atol=1e-5)
    assert slow.calls == batcher.forwards and slow.calls < len(QUERIES) / 2


def test_errors_reach_every_waiting_caller(clip_dir: Path) -> None:
    class Broken:
        def embed_texts(self, texts):
            raise RuntimeError("model exploded")

    batcher = TextQueryBatcher(Broken())
    with pytest.raises(RuntimeError, match="model exploded"):
        batcher.embed_texts(["a cat"])
    batcher.close()
