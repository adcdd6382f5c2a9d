"""The SQL store on SQLite and PostgreSQL: schema, collection binding, batched changes, filters."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from pixseek.store.database import DatabaseError, _alembic_config, head_revision, open_database
from pixseek.store.records import ChangeBatch, FileFacts, SearchFilters
from pixseek.store.repository import CollectionMismatchError, Store


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def store(database_url: str):
    store = Store.open(database_url)
    yield store
    store.close()


def _collection(store: Store, name: str = "default", fingerprint: str = "abc"):
    return store.ensure_collection(name, model_id="m", fingerprint=fingerprint, dim=8, precision="fp32")


def test_migrations_create_schema_and_are_idempotent(database_url: str) -> None:
    engine = open_database(database_url)
    open_database(database_url)  # second open: nothing to do, no error
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head == head_revision(), "the fast path at open compares with the numbered file names"
    with engine.connect() as connection:
        assert connection.execute(text("select version_num from alembic_version")).scalar() == head
        assert set(inspect(connection).get_table_names()) >= {"collections", "images", "collection_folders"}
    engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()


def test_database_from_newer_pixseek_is_refused(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    open_database(url).dispose()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("update alembic_version set version_num = '9999'"))
    engine.dispose()
    with pytest.raises(DatabaseError, match="newer pixseek"):
        open_database(url)


def test_collection_refuses_another_model(store: Store) -> None:
    first = _collection(store)
    assert _collection(store) == first
    with pytest.raises(CollectionMismatchError, match="--collection"):
        _collection(store, fingerprint="other")
    other = _collection(store, name="other", fingerprint="other")
    assert other.id != first.id


def test_apply_inserts_moves_deletes_and_tracks_generation(store: Store) -> None:
    rng = np.random.default_rng(0)
    info = _collection(store)
    vectors = _unit(rng, 3, 8)
    batch = ChangeBatch(
        indexed=[
            (FileFacts(f"/p/{i}.jpg", 10, 1, f"h{i}", "JPEG", 100 + i, 50), vectors[i]) for i in range(3)
        ],
        failed=[(FileFacts("/p/bad.jpg", 0, 1), "empty file")],
    )
    changes = store.apply(info.id, batch)
    assert len(changes.added_ids) == 3 and changes.generation == 1
    ids, stored = store.embeddings(changes.added_ids.tolist(), 8)
    np.testing.assert_array_equal(stored[np.argsort(ids)], vectors)
    assert store.stats(info.id).indexed == 3 and store.stats(info.id).failed == 1

    moved_id = int(changes.added_ids[0])
    moved = store.apply(info.id, ChangeBatch(moved=[(moved_id, FileFacts("/q/0.jpg", 10, 2))]))
    assert moved.generation == 1, "a move changes no vector, so the FAISS index needs no update"
    assert store.images([moved_id])[moved_id].path == "/q/0.jpg"
    assert store.indexed_by_hash(info.id, ["h0"]) == {"h0": [(moved_id, "/q/0.jpg")]}

    removed = store.apply(info.id, ChangeBatch(deleted=[int(changes.added_ids[1])]))
    assert removed.removed_ids.tolist() == [int(changes.added_ids[1])] and removed.generation == 2
    assert sorted(store.indexed_ids(info.id).tolist()) == sorted([moved_id, int(changes.added_ids[2])])
    assert set(store.known_files(info.id, ["/p"])) == {"/p/2.jpg", "/p/bad.jpg"}


def test_known_files_does_not_match_sibling_prefixes(store: Store) -> None:
    rng = np.random.default_rng(1)
    info = _collection(store)
    paths = ["/photos/a.jpg", "/photos2/b.jpg", "/photos/sub/c.jpg", "/pho%tos/d.jpg"]
    store.apply(
        info.id,
        ChangeBatch(
            indexed=[(FileFacts(p, 1, 1, p), v) for p, v in zip(paths, _unit(rng, 4, 8), strict=True)]
        ),
    )
    assert set(store.known_files(info.id, ["/photos"])) == {"/photos/a.jpg", "/photos/sub/c.jpg"}
    assert set(store.known_files(info.id, ["/pho%tos"])) == {"/pho%tos/d.jpg"}
    assert set(store.known_files(info.id, ["/photos/a.jpg"])) == {"/photos/a.jpg"}


def test_filtered_ids(store: Store) -> None:
    rng = np.random.default_rng(2)
    info = _collection(store)
    rows = [
        FileFacts("/a/1.jpg", 1, 1, "1", "JPEG", 4000, 3000, datetime(2020, 5, 1)),
        FileFacts("/a/2.png", 1, 1, "2", "PNG", 640, 480, datetime(2021, 7, 1)),
        FileFacts("/b/3.jpg", 1, 1, "3", "JPEG", 1024, 768, None),
    ]
    ids = store.apply(
        info.id, ChangeBatch(indexed=list(zip(rows, _unit(rng, 3, 8), strict=True)))
    ).added_ids.tolist()

    def matching(**kwargs) -> list[int]:
        return sorted(store.filtered_ids(info.id, SearchFilters(**kwargs)).tolist())

    assert matching(folders=("/a",)) == ids[:2]
    assert matching(formats=("jpeg",)) == [ids[0], ids[2]]
    assert matching(min_width=1000) == [ids[0], ids[2]]
    assert matching(min_height=3000) == [ids[0]]
    assert matching(taken_after=datetime(2021, 1, 1)) == [ids[1]]
    assert matching(taken_before=datetime(2021, 1, 1), folders=("/a", "/b")) == [ids[0]]


def test_folder_filters_are_case_sensitive_and_take_any_number_and_length(store: Store) -> None:
    """A folder filter is an exact path prefix on both backends: SQLite's LIKE ignored ASCII case
    (/photos matched /Photos/...), refused patterns over 50,000 bytes, and 499 folders made one
    expression too deep for it. The CLI passes whatever --folder paths it was given."""
    rng = np.random.default_rng(3)
    info = _collection(store)
    long_folder = "/" + "d" * 2000  # PostgreSQL's btree on (collection, path) takes up to ~2700 bytes
    paths = ["/photos/a.jpg", "/Photos/b.jpg", "/photos_x/c.jpg", f"{long_folder}/e.jpg", "/many/7/f.jpg"]
    facts = [FileFacts(path, 1, 1, f"h{i}") for i, path in enumerate(paths)]
    ids = store.apply(
        info.id, ChangeBatch(indexed=list(zip(facts, _unit(rng, 5, 8), strict=True)))
    ).added_ids.tolist()

    def matching(*folders: str) -> list[int]:
        return sorted(store.filtered_ids(info.id, SearchFilters(folders=folders)).tolist())

    assert matching("/photos") == [ids[0]]
    assert matching("/Photos") == [ids[1]]
    assert matching("/photos_") == []  # "_" is no wildcard
    assert matching(long_folder) == [ids[3]]
    assert matching("/" + "d" * 60_000) == []
    many = [f"/many/{i}" for i in range(1000)]
    assert matching(*many) == [ids[4]]
    assert matching(*many, "/photos") == [ids[0], ids[4]]
