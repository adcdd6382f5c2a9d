"""The FAISS index: atomic persistence, reconciliation with SQL, filtered search that still fills k."""

from __future__ import annotations

import numpy as np
import pytest

from pixseek.store.repository import ChangeBatch, FileFacts, Store
from pixseek.store.vector_index import VectorIndex


def _unit(rng: np.random.Generator, n: int, dim: int = 8) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def filled(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    info = store.ensure_collection("c", model_id="m", fingerprint="f", dim=8, precision="fp32")
    rng = np.random.default_rng(0)
    batch = ChangeBatch(
        indexed=[(FileFacts(f"/p/{i}.jpg", 1, 1, str(i)), v) for i, v in enumerate(_unit(rng, 50))]
    )
    changes = store.apply(info.id, batch)
    yield store, store.collection("c"), changes
    store.close()


def test_save_is_atomic_and_roundtrips(tmp_path, filled) -> None:
    store, info, changes = filled
    vectors = VectorIndex(8)
    vectors.update(changes.added_ids, changes.added_vectors, changes.removed_ids, changes.generation)
    path = tmp_path / "idx" / "c.faiss"
    vectors.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.faiss", "c.faiss.json"], "no temp files left"
    loaded = VectorIndex.load(path, 8)
    assert loaded.generation == info.generation
    assert loaded.reconcile(store, info) == (0, 0)
    query = changes.added_vectors[:1]
    np.testing.assert_array_equal(loaded.search(query, 5)[1], vectors.search(query, 5)[1])


def test_reconcile_adds_missing_and_removes_stale(filled) -> None:
    store, info, changes = filled
    vectors = VectorIndex(8)
    # An index that missed the last 10 vectors and still holds 2 ids SQL no longer has.
    vectors.update(changes.added_ids[:40], changes.added_vectors[:40], np.array([], np.int64), 0)
    vectors.update(np.array([9001, 9002]), changes.added_vectors[:2], np.array([], np.int64), 0)
    assert vectors.reconcile(store, info) == (10, 2)
    assert sorted(vectors.ids().tolist()) == sorted(changes.added_ids.tolist())
    scores, ids = vectors.search(changes.added_vectors[45:46], 1)
    assert ids[0, 0] == changes.added_ids[45] and scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_unreadable_or_wrong_dim_file_means_rebuild(tmp_path, filled) -> None:
    store, info, _ = filled
    path = tmp_path / "c.faiss"
    path.write_bytes(b"garbage")
    broken = VectorIndex.load(path, 8)
    assert len(broken) == 0 and broken.reconcile(store, info) == (50, 0)
    VectorIndex(16).save(path)
    assert len(VectorIndex.load(path, 8)) == 0
    rebuilt = VectorIndex.rebuild(store, info)
    assert len(rebuilt) == 50 and rebuilt.generation == info.generation


def test_filtered_search_returns_k_when_k_match(filled) -> None:
    _, _, changes = filled
    vectors = VectorIndex(8)
    vectors.update(changes.added_ids, changes.added_vectors, np.array([], np.int64), 1)
    allowed = changes.added_ids[::5]  # 10 of 50 allowed
    query = changes.added_vectors[1:2]  # its own id is not allowed
    _, ids = vectors.search(query, 7, allowed)
    assert ids.shape == (1, 7) and set(ids[0].tolist()) <= set(allowed.tolist())
    # Same order as brute force over the allowed subset.
    brute = allowed[np.argsort(-(changes.added_vectors[::5] @ query[0]))][:7]
    np.testing.assert_array_equal(ids[0], brute)
    assert vectors.search(query, 7, np.array([], np.int64))[1].shape == (1, 0)
