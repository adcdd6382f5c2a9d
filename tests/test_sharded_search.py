"""Sharded search over Ray actors answers exactly like one unsharded exact VectorIndex.

The merge and the shard function are checked without Ray first (they are plain numpy); the Ray
tests then start 4 shard actors on a local Ray and compare whole result arrays, ids and scores,
with ``np.array_equal``: k larger than a shard and than the collection, ties, empty shards, filters.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

try:
    import ray
except ImportError:  # the merge tests still run; the actor tests skip
    ray = None

from pixseek.distributed.sharded_search import ShardedIndex, ShardServer, shard_of
from pixseek.search.searcher import Searcher
from pixseek.store.ann.topk import EMPTY_ID as MISSING_ID
from pixseek.store.ann.topk import EMPTY_SCORE as MISSING_SCORE
from pixseek.store.ann.topk import merge_top_k
from pixseek.store.records import ChangeBatch, FileFacts, SearchFilters
from pixseek.store.repository import Store
from pixseek.store.vector_index import VectorIndex

DIM = 32
SHARDS = 4
EMPTY = np.empty(0, np.int64)


def _unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _exact(ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
    index = VectorIndex(vectors.shape[1])
    index.update(ids, vectors, EMPTY, 1)
    return index


def _trim(result: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Without trailing columns that hold no result in any row: how many padding slots an index
    answers when it has fewer than k candidates is a convention of its own, not a result."""
    scores, ids = result
    width = ids.shape[1]
    while width and (ids[:, width - 1] == MISSING_ID).all():
        width -= 1
    return scores[:, :width], ids[:, :width]


def _assert_same(expected: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray]) -> None:
    """The same results, bit for bit for one query. For a batch, FAISS computes scores with sgemm
    (pixseek sets the BLAS threshold to 2 queries), whose rounding depends on the shape of the matrix,
    i.e. on how many vectors the index holds: scores then agree within float32 rounding, and ids
    wherever the scores around a rank are not within that rounding of each other."""
    expected, got = _trim(expected), _trim(got)
    assert got[0].shape == expected[0].shape and got[1].shape == expected[1].shape
    if len(expected[0]) == 1:
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_array_equal(got[0], expected[0])
        return
    np.testing.assert_allclose(got[0], expected[0], atol=1e-6, rtol=0)
    scores = expected[0].astype(np.float64)
    gaps = np.abs(np.diff(scores, axis=1))
    separated = np.ones(scores.shape, dtype=bool)
    separated[:, 1:] &= gaps > 1e-5
    separated[:, :-1] &= gaps > 1e-5
    np.testing.assert_array_equal(got[1][separated], expected[1][separated])


# ---- without Ray -------------------------------------------------------------------------------
def _splitmix64(value: int) -> int:
    """The reference mixer, in Python integers (no numpy wrap-around), to check the vectorised one."""
    mask = (1 << 64) - 1
    z = (value + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_shard_of_is_splitmix64_and_spreads_sequential_ids() -> None:
    ids = np.arange(1, 100_001, dtype=np.int64)
    shards = shard_of(ids, SHARDS)
    sample = [1, 2, 3, 999, 2**40 + 7, 2**62]
    assert shard_of(np.array(sample), 7).tolist() == [_splitmix64(i) % 7 for i in sample]
    counts = np.bincount(shards, minlength=SHARDS)
    assert counts.min() > 0.97 * len(ids) / SHARDS, counts
    assert len(set(shards[:8].tolist())) > 1, "sequential ids must not all land on one shard"


def test_merge_keeps_the_largest_inner_products_not_the_smallest() -> None:
    # An L2-ordered heap (FAISS's client_server ResultHeap default) would return 0.1 and 0.2 here.
    scores = [np.array([[0.9, 0.2]], np.float32), np.array([[0.95, 0.1]], np.float32)]
    ids = [np.array([[10, 11]]), np.array([[20, 21]])]
    merged_scores, merged_ids = merge_top_k(list(zip(scores, ids, strict=True)), 2)
    assert merged_ids.tolist() == [[20, 10]]
    np.testing.assert_allclose(merged_scores, [[0.95, 0.9]])


def test_merge_ignores_padding_and_pads_short_rows() -> None:
    scores = [np.array([[0.5, MISSING_SCORE]], np.float32), np.zeros((1, 0), np.float32)]
    ids = [np.array([[7, MISSING_ID]]), np.zeros((1, 0), np.int64)]
    merged_scores, merged_ids = merge_top_k(list(zip(scores, ids, strict=True)), 3)
    assert merged_ids.tolist() == [[7, MISSING_ID, MISSING_ID]]
    assert merged_scores[0, 0] == np.float32(0.5) and (merged_scores[0, 1:] == MISSING_SCORE).all()


def test_in_process_shards_match_one_index() -> None:
    """The shard servers and the merge without Ray: the same comparison the Ray tests make."""
    rng = np.random.default_rng(3)
    ids = np.sort(rng.choice(10**9, 400, replace=False))
    vectors = _unit(rng, len(ids))
    shards = [ShardServer(DIM, shard, SHARDS) for shard in range(SHARDS)]
    for server in shards:
        server.add(ids, vectors)
    assert sum(server.size() for server in shards) == len(ids)
    queries = _unit(rng, 5)
    for k in (1, 10, 150, 1000):
        parts = [server.search(queries, k) for server in shards]
        merged = merge_top_k(parts, min(k, len(ids)))
        _assert_same(_exact(ids, vectors).search(queries, k), merged)


# ---- with Ray ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shard_actors(ray_cluster) -> Iterator[ShardedIndex]:
    """Four shard actors for the whole module (starting actors is what costs here); killed at its end,
    so they never hold CPUs that the indexing tests' actors need."""
    index = ShardedIndex.create(DIM, SHARDS, num_cpus=0.25)
    yield index
    index.shutdown()


@pytest.fixture
def make_sharded(shard_actors: ShardedIndex):
    """The module's shard actors, emptied and filled with a test's vectors."""

    def make(ids: np.ndarray, vectors: np.ndarray) -> ShardedIndex:
        shard_actors.clear(vectors.shape[1])
        shard_actors.add(ids, vectors, 1)
        return shard_actors

    return make


@pytest.mark.ray
def test_sharded_equals_unsharded_for_every_k(make_sharded) -> None:
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(10**9, 1000, replace=False))
    vectors = _unit(rng, len(ids))
    sharded, exact = make_sharded(ids, vectors), _exact(ids, vectors)
    sizes = sharded.sizes()
    assert sum(sizes) == len(ids) and min(sizes) > 0
    for nq in (1, 7):
        queries = _unit(rng, nq)
        # k: one, ordinary, larger than any shard, larger than the collection
        for k in (1, 10, max(sizes) + 17, len(ids) + 50):
            _assert_same(exact.search(queries, k), sharded.search(queries, k))


@pytest.mark.ray
def test_ties_across_shards(make_sharded) -> None:
    """Groups of identical vectors spread over every shard: equal scores, ids ordered as FAISS does.
    One query at a time, so that identical vectors get bit-identical scores (see _assert_same)."""
    rng = np.random.default_rng(1)
    groups = _unit(rng, 6)
    membership = np.repeat(np.arange(6), 25)  # 6 groups of 25 identical vectors
    vectors = groups[membership]
    ids = np.arange(1, len(vectors) + 1) * 3
    group_of = dict(zip(ids.tolist(), membership.tolist(), strict=True))
    sharded, exact = make_sharded(ids, vectors), _exact(ids, vectors)
    assert all(
        len({group_of[i] for i in ids[shard_of(ids, SHARDS) == s].tolist()}) == 6 for s in range(SHARDS)
    )
    for query in _unit(rng, 4):
        query = query[None]
        # k at group boundaries: the answer is the whole of the best groups, whatever breaks ties
        for k in (25, 50, 75, 150, 200):
            _assert_same(exact.search(query, k), sharded.search(query, k))
        # k inside a tie group: the same scores; among the tied group FAISS keeps no documented
        # choice, the merge keeps its smallest ids (and orders them larger id first, as FAISS does)
        for k in (10, 60):
            expected_scores, _ = exact.search(query, k)
            scores, got = sharded.search(query, k)
            np.testing.assert_array_equal(scores, expected_scores)
            cut_group = group_of[int(got[0, -1])]
            kept = [i for i in got[0].tolist() if group_of[i] == cut_group]
            assert kept == sorted(ids[membership == cut_group].tolist())[: len(kept)][::-1]
            assert len(set(got[0].tolist())) == k


@pytest.mark.ray
def test_empty_shards_and_empty_collection(make_sharded) -> None:
    rng = np.random.default_rng(2)
    ids = np.array([5, 9], dtype=np.int64)
    vectors = _unit(rng, 2)
    sharded = make_sharded(ids, vectors)
    assert sorted(sharded.sizes()).count(0) >= 2
    queries = _unit(rng, 3)
    for k in (1, 2, 10):
        _assert_same(_exact(ids, vectors).search(queries, k), sharded.search(queries, k))
    nothing = make_sharded(EMPTY, np.zeros((0, DIM), np.float32))
    _assert_same(VectorIndex(DIM).search(queries, 5), nothing.search(queries, 5))


@pytest.mark.ray
def test_filters_pass_allowed_ids_per_shard(make_sharded) -> None:
    rng = np.random.default_rng(4)
    ids = np.sort(rng.choice(10**6, 800, replace=False))
    vectors = _unit(rng, len(ids))
    sharded, exact = make_sharded(ids, vectors), _exact(ids, vectors)
    queries = _unit(rng, 3)
    one_shard = ids[shard_of(ids, SHARDS) == 2][:30]
    absent = np.array([ids.max() + 1, ids.max() + 2])  # allowed but not indexed: padded, as FAISS does
    for allowed in (rng.choice(ids, 80, replace=False), one_shard, ids[:3], EMPTY, np.r_[ids[:4], absent]):
        for k in (1, 10, 100):
            _assert_same(exact.search(queries, k, allowed), sharded.search(queries, k, allowed))


@pytest.mark.ray
def test_large_query_batch_same_ids_scores_within_rounding(make_sharded) -> None:
    """Past FAISS's BLAS threshold (here 300 queries x 512-d) scores come from sgemm, whose rounding
    depends on the matrix shape: equal to within float32 rounding, not bit for bit."""
    rng = np.random.default_rng(5)
    ids = np.arange(1, 3001)
    vectors = _unit(rng, len(ids), 512)
    sharded, exact = make_sharded(ids, vectors), _exact(ids, vectors)
    queries = _unit(rng, 300, 512)
    expected_scores, expected_ids = exact.search(queries, 10)
    scores, got_ids = sharded.search(queries, 10)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)
    gaps = np.diff(expected_scores, axis=1)
    clear = np.all(np.abs(gaps) > 1e-5, axis=1)  # rows without near-ties, where the order is fixed
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(got_ids[clear], expected_ids[clear])


@pytest.mark.ray
def test_shards_load_themselves_from_the_store(shard_actors: ShardedIndex, tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'pixseek.db'}")
    collection = store.ensure_collection("c", model_id="m", fingerprint="f", dim=DIM, precision="fp32")
    rng = np.random.default_rng(6)
    vectors = _unit(rng, 120)
    batch = ChangeBatch(indexed=[(FileFacts(f"/p/{i}.jpg", 1, 1), vectors[i]) for i in range(120)])
    store.apply(collection.id, batch)
    store.apply(collection.id, ChangeBatch(deleted=list(range(1, 121, 7))))  # deletes leave holes
    collection = store.collection("c")
    exact = VectorIndex.rebuild(store, collection)
    shard_actors.clear(DIM)
    shard_actors.add(np.array([10**6]), _unit(rng, 1), 1)  # left from before: a reload replaces it
    try:
        shard_actors.load_from_store(store.engine.url.render_as_string(), collection.id)
        assert sum(shard_actors.sizes()) == len(exact) == 120 - len(range(1, 121, 7))
        queries = _unit(rng, 4)
        for k in (5, 50, 200):
            _assert_same(exact.search(queries, k), shard_actors.search(queries, k))
            _assert_same(exact.search(queries[:1], k), shard_actors.search(queries[:1], k))
        # the searcher only calls search(): shards serve `like` and filtered searches unchanged
        folder = SearchFilters(folders=("/p",))
        sharded = Searcher(store, collection, shard_actors, lambda: None)
        local = Searcher(store, collection, exact, lambda: None)
        assert sharded.like(2, k=7) == local.like(2, k=7) and len(local.like(2, k=7)) == 7
        assert sharded.by_vector(queries[0], 9, folder) == local.by_vector(queries[0], 9, folder)
    finally:
        store.close()
