"""Sharded search in the product: shards that plan their own index from their share of SQL, and
``ray_address`` sending a library's searches (API, CLI) to them.

Without Ray: a shard past the exact-search threshold builds and tunes an ANN base from its share of
the store and answers within the recall target; below it, a shard stays exact; both follow SQL.
With Ray: a head and a worker node on this machine (``ray.cluster_utils.Cluster``, one CPU each;
it stops only its own processes), the test photos indexed locally, then ``POST /search`` of a server
with ``ray_address`` and ``pixseek search --ray-address`` return what one local exact index returns,
also after the server indexed more photos (the shards catch up from SQL).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api_client import wait_for_job
from cli_runner import cli
from pixseek.api.app import create_app
from pixseek.api.config import ServerSettings
from pixseek.config import Settings
from pixseek.distributed.sharded_search import ShardServer, shard_of
from pixseek.distributed.sharded_serving import ShardedSearch
from pixseek.library import Library
from pixseek.store.ann.topk import merge_top_k
from pixseek.store.index_options import IndexOptions
from pixseek.store.records import ChangeBatch, FileFacts
from pixseek.store.repository import Store
from pixseek.store.vector_index import VectorIndex

DIM = 32
SHARDS = 2
QUERIES = ("a cat", "coffee in a cup", "a rocket", "an astronaut", "a grey photo")


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Embedding-like vectors (Gaussian clusters in a subspace), as tests/test_vector_index.py uses:
    on uniform random vectors every ANN index has near-zero recall."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, 8)) * 3
    points = centres[rng.integers(0, 40, n)] + rng.standard_normal((n, 8))
    x = points @ rng.standard_normal((8, DIM)) + 0.3 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[tuple[str, Store, np.ndarray]]:
    """A collection of 4000 clustered vectors in SQLite: (url, store, vectors by id - 1)."""
    url = f"sqlite:///{tmp_path / 'pixseek.db'}"
    store = Store.open(url)
    collection = store.ensure_collection("c", model_id="m", fingerprint="f", dim=DIM, precision="fp32")
    vectors = clustered(4000 + 500)  # the last 500: queries and later rows from the same clusters
    for start in range(0, 4000, 1000):
        rows = range(start, start + 1000)
        store.apply(
            collection.id, ChangeBatch(indexed=[(FileFacts(f"/p/{i}.jpg", 1, 1), vectors[i]) for i in rows])
        )
    yield url, store, vectors
    store.close()


def _shards(url: str, store: Store, options: IndexOptions | None) -> list[ShardServer]:
    collection = store.collection("c")
    shards = [ShardServer(DIM, shard, SHARDS, options) for shard in range(SHARDS)]
    for shard in shards:
        shard.load_from_store(url, collection.id)
    return shards


def _search(shards: list[ShardServer], queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    return merge_top_k([shard.search(queries, k) for shard in shards], k)


def test_a_shard_past_the_exact_threshold_builds_an_ann_base_from_its_share(stored) -> None:
    """Each shard plans for its own 2000 vectors as one box would (here: the memory budget only
    fits IVF-PQ codes, re-ranked exactly from the shard's share in SQL), tunes to the recall target,
    and the merged answer matches one unsharded index of the same plan within it."""
    url, store, vectors = stored
    options = IndexOptions(memory_budget=60_000, merge_min=500, recall_target=0.95)
    shards = _shards(url, store, options)
    collection = store.collection("c")
    ids = store.indexed_ids(collection.id)
    for shard in shards:
        described = shard.describe()
        share = ids[shard_of(ids, SHARDS) == shard.shard]
        assert described.type == "ivfpq" and described.base_vectors == len(share) > 1500
        assert described.measured_recall >= 0.95 and described.delta_vectors == 0
        np.testing.assert_array_equal(np.sort(shard.index.ids()), np.sort(share))
    one_box = VectorIndex.rebuild(store, collection, options)
    assert one_box.describe().type == "ivfpq"

    queries = vectors[4000:4200]
    truth = ids[np.argsort(-(queries @ vectors[ids - 1].T), axis=1, kind="stable")[:, :10]]
    sharded = _search(shards, queries, 10)[1]
    assert recall_at(sharded, truth) >= 0.9, "tuned for 0.95 on each shard's own sample"
    assert recall_at(sharded, one_box.search(queries, 10)[1]) >= 0.9
    assert recall_at(one_box.search(queries, 10)[1], truth) >= 0.9

    # Shards follow SQL: new rows and removals reach the shard owning them, which keeps a base.
    new = vectors[4200:]
    store.apply(
        collection.id, ChangeBatch(indexed=[(FileFacts(f"/q/{i}.jpg", 1, 1), new[i]) for i in range(300)])
    )
    store.apply(collection.id, ChangeBatch(deleted=ids[:50].tolist()))
    ids = store.indexed_ids(collection.id)
    generation = store.collection("c").generation
    for shard in shards:
        added, removed, reached = shard.catch_up()
        assert reached == generation and added > 100 and removed > 10
        np.testing.assert_array_equal(
            np.sort(shard.index.ids()), np.sort(ids[shard_of(ids, SHARDS) == shard.shard])
        )
        assert shard.describe().type == "ivfpq"
    found = _search(shards, new[:20], 1)[1][:, 0]
    assert (found == store.indexed_ids(collection.id)[-300:][:20]).mean() >= 0.9


def test_below_the_threshold_shards_stay_exact_and_answer_like_one_exact_index(stored) -> None:
    url, store, _ = stored
    shards = _shards(url, store, None)  # one box's defaults: no base below 20,000 vectors
    assert all(shard.describe().base_vectors == 0 for shard in shards)
    exact = VectorIndex.rebuild(store, store.collection("c"))
    for query in clustered(5, seed=3):
        for k in (1, 10, 3000):
            expected, got = exact.search(query[None], k), _search(shards, query[None], k)
            np.testing.assert_array_equal(got[1], expected[1])
            np.testing.assert_array_equal(got[0], expected[0])


# ---- with Ray: a head and a worker node ----------------------------------------------------------


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[str]:
    """A Ray cluster of a head and a worker (one CPU each), this process its driver: its address."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'pixseek[ray]')")
    from ray.cluster_utils import Cluster

    was_connected = ray.is_initialized()  # the session's local Ray (tests/conftest.py ray_cluster)
    if was_connected:
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, logging_level="WARNING")
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()
        if was_connected:  # as the session fixture left it, for the tests after these
            ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")


@pytest.fixture
def indexed(settings: Settings, photos: Path) -> Settings:
    """The test photos indexed locally (no Ray): what every search below compares with."""
    with Library(settings) as library:
        encoder = library.load_encoder()
        library.indexer(encoder).run([photos])
        library.finish_vectors(library.collection())
    return settings


def _local(settings: Settings, query: str, mode: str = "semantic") -> list[tuple[int, float]]:
    with Library(settings) as library:
        assert library.settings.ray_address is None
        outcome = library.search(query, k=10, mode=mode)
    return [(hit.id, hit.score) for hit in outcome.hits]


def _free_cpus(expected: float | None = None, timeout: float = 60) -> float:
    """The cluster's unreserved CPUs; with ``expected``, once they reach it (a killed actor gives
    its CPU back when its process has exited) or the timeout passed."""
    import ray

    deadline = time.monotonic() + timeout
    while True:
        free = ray.available_resources().get("CPU", 0.0)
        if expected is None or free == expected or time.monotonic() > deadline:
            return free
        time.sleep(0.5)


@pytest.mark.ray
def test_server_with_ray_address_searches_the_shards(two_nodes: str, indexed: Settings, photos: Path) -> None:
    """POST /search of a server with ray_address: two shards (one per node, each loading its share
    from SQL) answer the same top-10 as one local exact index, ids and scores; after the server
    indexes more photos, the next search sees them (the shards caught up from SQL)."""
    server = ServerSettings(**{**indexed.model_dump(), "library_roots": [photos], "ray_address": two_nodes})
    with TestClient(create_app(server)) as client:

        def search(query: str, mode: str = "semantic") -> list[tuple[int, float]]:
            response = client.post("/search", json={"query": query, "k": 10, "mode": mode})
            assert response.status_code == 200, response.text
            return [(hit["image"]["id"], hit["score"]) for hit in response.json()["results"]]

        for query in QUERIES:
            expected = _local(indexed, query)
            assert len(expected) == 10 and search(query) == expected
        assert search(QUERIES[0], "hybrid") == _local(indexed, QUERIES[0], "hybrid")
        library = client.app.state.pixseek.library
        sharded = library.search_vectors(library.collection())
        assert isinstance(sharded, ShardedSearch) and sharded is library.sharded_search(library.collection())
        assert sharded.index.num_shards == 2 and min(sharded.index.sizes()) > 0
        assert _free_cpus() == 0, "one shard per node (one CPU each), each reserving one CPU"

        # The server indexes more (a copy of the photos under a new folder): SQL moves, shards follow.
        shutil.copytree(photos / "indoor", photos / "more")
        assert wait_for_job(client, client.post("/index").json()["id"], timeout=240)["state"] == "done"
        before = sharded.generation
        for query in QUERIES[:2]:
            assert search(query) == _local(indexed, query)
        assert sharded.generation > before
    assert _free_cpus(2) == 2, "closing the server stopped its shards"


@pytest.mark.ray
def test_cli_search_with_ray_address(
    two_nodes: str, indexed: Settings, clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIXSEEK_DATA_DIR", str(indexed.data_dir))
    monkeypatch.setenv("PIXSEEK_MODEL", str(clip_dir))
    monkeypatch.setenv("PIXSEEK_PRECISION", "fp32")
    monkeypatch.setenv("PIXSEEK_DEVICE", "cpu")
    for query in QUERIES[:2]:
        output = cli("search", query, "-k", "10", "--mode", "semantic", "--ray-address", two_nodes, "--json")
        hits, _ = json.JSONDecoder().raw_decode(output[output.index("[") :])
        assert [(hit["id"], hit["score"]) for hit in hits] == _local(indexed, query)
    assert _free_cpus(2) == 2, "the command stopped its shards when it ended"
