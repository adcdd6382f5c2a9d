"""Concurrent text queries batched into shared forwards give the same vectors as one by one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pixseek.embedding import load_encoder
from pixseek.search.batching import TextQueryBatcher, VectorSearchBatcher
from pixseek.store.vector_index import VectorIndex

QUERIES = ["a cat", "a red car on a long road", "ein Hund", "un chat", "mountains", "a page of text"] * 4


class SlowEncoder:
    """The real encoder, slowed so that concurrent requests pile up while a forward runs."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.calls = 0

    def __getattr__(self, name):  # everything but embed_texts is the real encoder's
        return getattr(self.encoder, name)

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
    class Broken(SlowEncoder):
        def embed_texts(self, texts):
            raise RuntimeError("model exploded")

    batcher = TextQueryBatcher(Broken(load_encoder(str(clip_dir), device="cpu")))
    with pytest.raises(RuntimeError, match="model exploded"):
        batcher.embed_texts(["a cat"])
    batcher.close()


def test_concurrent_vector_searches_share_faiss_calls() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(2000, dtype=np.int64) * 3
    index = VectorIndex(16)
    index.update(ids, x, np.empty(0, np.int64), 1)

    class Slow:  # holds each FAISS call long enough for requests to pile up
        dim = 16

        def __init__(self):
            self.calls = 0

        def __len__(self):
            return len(index)

        def search(self, queries, k, allowed_ids=None):
            self.calls += 1
            time.sleep(0.05)
            return index.search(queries, k, allowed_ids)

    slow = Slow()
    batcher = VectorSearchBatcher(slow)
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    ks = [1 + i % 7 for i in range(24)]

    def ask(i: int) -> None:
        results[i] = batcher.search(x[i : i + 1], ks[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, k in enumerate(ks):
        expected_scores, expected_ids = index.search(x[i : i + 1], k)
        np.testing.assert_array_equal(results[i][1], expected_ids)
        np.testing.assert_allclose(results[i][0], expected_scores, rtol=1e-6)
    assert slow.calls == batcher.searches and slow.calls < 24 / 2
    assert batcher.dim == 16 and len(batcher) == len(index)
    allowed = ids[:10]
    _, filtered = batcher.search(x[:1], 5, allowed)  # filtered searches go straight to the index
    assert np.isin(filtered, allowed).all() and slow.calls == batcher.searches + 1
    batcher.close()
