"""The on-disk feature cache: byte budget with LRU eviction, persistence, and damaged entries."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pytest

from pixseek.search.rerank import FeatureCache

SHAPE = (4, 8)
DTYPE = np.dtype(np.float16)


def key(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def features(i: int) -> np.ndarray:
    return np.full(SHAPE, i / 7, dtype=np.float32)


def entry_bytes(tmp_path: Path) -> int:
    """What one entry takes on disk (.npy header included), measured rather than assumed."""
    probe = FeatureCache(tmp_path / "probe", 1 << 20, SHAPE, DTYPE)
    probe.put(key(0), features(0))
    return probe.total_bytes


def cache_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def test_round_trip_is_float16_and_persists(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c", 1 << 20, SHAPE, DTYPE)
    assert cache.get(key(1)) is None and key(1) not in cache
    assert cache.put(key(1), features(1))
    got = cache.get(key(1))
    assert got.dtype == np.float16 and got.shape == SHAPE
    np.testing.assert_array_equal(got, features(1).astype(np.float16))
    again = FeatureCache(tmp_path / "c", 1 << 20, SHAPE, DTYPE)  # another process, later
    assert key(1) in again and len(again) == 1
    np.testing.assert_array_equal(again.get(key(1)), got)
    assert not [p for p in cache_files(tmp_path / "c") if p.name.endswith(".tmp")]  # writes are atomic


def test_byte_budget_evicts_least_recently_used(tmp_path: Path) -> None:
    size = entry_bytes(tmp_path)
    cache = FeatureCache(tmp_path / "c", 3 * size, SHAPE, DTYPE)
    for i in range(3):
        assert cache.put(key(i), features(i))
    assert cache.total_bytes == 3 * size
    assert cache.get(key(0)) is not None  # 0 is now the most recent; 1 the least
    assert cache.put(key(3), features(3))
    assert key(1) not in cache and {key(0), key(2), key(3)} == {k for k in map(key, range(4)) if k in cache}
    assert cache.total_bytes == 3 * size <= cache.max_bytes
    assert len(cache_files(tmp_path / "c")) == 3  # evicted entries leave the disk too


def test_recency_survives_reopening(tmp_path: Path) -> None:
    size = entry_bytes(tmp_path)
    cache = FeatureCache(tmp_path / "c", 3 * size, SHAPE, DTYPE)
    for i in range(3):
        cache.put(key(i), features(i))
    past = time.time() - 100
    for i in range(3):  # make the on-disk order unambiguous: 0 oldest ... 2 newest
        path = next((tmp_path / "c").rglob(f"{key(i)}.npy"))
        os.utime(path, (past + i, past + i))
    reopened = FeatureCache(tmp_path / "c", 3 * size, SHAPE, DTYPE)
    reopened.get(key(0))  # a hit makes 0 the newest
    reopened.put(key(3), features(3))
    assert key(1) not in reopened and key(0) in reopened


def test_smaller_budget_on_reopen_evicts_down_to_it(tmp_path: Path) -> None:
    size = entry_bytes(tmp_path)
    cache = FeatureCache(tmp_path / "c", 10 * size, SHAPE, DTYPE)
    for i in range(5):
        cache.put(key(i), features(i))
    smaller = FeatureCache(tmp_path / "c", 2 * size, SHAPE, DTYPE)
    assert len(smaller) == 2 and smaller.total_bytes <= 2 * size
    assert len(cache_files(tmp_path / "c")) == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(path.read_bytes()[:40]),  # truncated
        lambda path: path.write_bytes(b"not a numpy file"),
        lambda path: np.save(path, np.zeros((3, 3), dtype=np.float16)),  # wrong shape
        lambda path: np.save(path, np.zeros(SHAPE, dtype=np.float64)),  # wrong dtype
        lambda path: path.unlink(),  # deleted behind the cache's back
    ],
)
def test_damaged_entry_is_a_miss_and_is_removed(tmp_path: Path, damage) -> None:
    cache = FeatureCache(tmp_path / "c", 1 << 20, SHAPE, DTYPE)
    cache.put(key(1), features(1))
    path = next((tmp_path / "c").rglob("*.npy"))
    damage(path)
    assert cache.get(key(1)) is None
    assert key(1) not in cache and not path.exists() and cache.total_bytes == 0
    assert cache.put(key(1), features(1)) and cache.get(key(1)) is not None  # recomputed, stored again


def test_what_cannot_be_kept(tmp_path: Path) -> None:
    off = FeatureCache(tmp_path / "off", 0, SHAPE, DTYPE)
    assert not off.put(key(1), features(1)) and not (tmp_path / "off").exists()
    cache = FeatureCache(tmp_path / "c", 1 << 20, SHAPE, DTYPE)
    assert not cache.put(key(2), np.full(SHAPE, 1e6, dtype=np.float32))  # overflows float16
    with pytest.raises(ValueError, match="content hashes"):
        cache.put("../../etc/passwd", features(1))
    with pytest.raises(ValueError, match="shape"):
        cache.put(key(3), np.zeros((2, 2)))


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    shard = tmp_path / "c" / "ab"
    shard.mkdir(parents=True)
    stale, fresh = shard / ".x.npy.1.a.tmp", shard / ".y.npy.2.b.tmp"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"being written")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert len(FeatureCache(tmp_path / "c", 1 << 20, SHAPE, DTYPE)) == 0
    assert not stale.exists() and fresh.exists()
