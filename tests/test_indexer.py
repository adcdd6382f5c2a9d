"""Indexing end to end on real sample photos: incremental runs, moves, copies, deletes, bad files."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hostile_files import make_hostile_tree
from pixseek.config import Settings
from pixseek.library import Library
from pixseek.store.records import SearchFilters


class CountingEncoder:
    """Wraps the real encoder and counts model calls: moves and touches must not run the model."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.image_calls = 0
        self.images_embedded = 0

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def embed_pixels(self, pixel_values):
        self.image_calls += 1
        self.images_embedded += len(pixel_values)
        return self.encoder.embed_pixels(pixel_values)


@pytest.fixture
def library(settings: Settings):
    library = Library(settings)
    yield library
    library.close()


def run_index(library: Library, *paths: Path, **options):
    encoder = CountingEncoder(library.load_encoder())
    report = library.indexer(encoder).run(list(paths), **options)
    return report, encoder


def assert_consistent(library: Library) -> None:
    """Every SQL embedding is in FAISS and vice versa, with the same vector."""
    collection = library.collection()
    in_sql = library.store.indexed_ids(collection.id)
    vectors = library.vectors(collection)
    assert sorted(vectors.ids().tolist()) == sorted(in_sql.tolist())
    ids, stored = library.store.embeddings(in_sql.tolist(), collection.dim)
    for image_id, vector in zip(ids[:5], stored[:5], strict=True):
        np.testing.assert_allclose(vectors.reconstruct(int(image_id)), vector, atol=1e-6)


def test_index_then_search_by_text_and_image(library: Library, photos: Path) -> None:
    report, encoder = run_index(library, photos)
    files = sorted(p for p in photos.rglob("*") if p.is_file())
    assert report.scanned == len(files)
    assert report.embedded + len(report.failed) == len(files)
    assert report.embedded >= 25
    assert encoder.image_calls == -(-report.embedded // library.settings.batch_size), (
        "batched, not one by one"
    )
    assert_consistent(library)

    searcher = library.searcher()
    hits = searcher.by_text("a cat", k=5)
    assert len(hits) == 5 and all(Path(hit.path).exists() for hit in hits)
    assert hits == sorted(hits, key=lambda hit: -hit.score)
    for name in ("chelsea.png", "coffee.png", "rocket.jpg"):
        query = next(photos.rglob(name))
        top = searcher.by_image_file(query, k=3)[0]
        assert top.path == str(query) and top.score == pytest.approx(1.0, abs=1e-3)
        similar = searcher.like(str(query), k=3)
        assert len(similar) == 3 and all(hit.path != str(query) for hit in similar)


def test_second_run_skips_unchanged_files_without_model_calls(library: Library, photos: Path) -> None:
    first, _ = run_index(library, photos)
    second, encoder = run_index(library, photos)
    assert second.unchanged == first.scanned and second.embedded == 0
    assert encoder.image_calls == 0


def test_move_rename_copy_touch_and_delete(library: Library, photos: Path) -> None:
    run_index(library, photos)
    store, collection = library.store, library.collection()
    chelsea, coffee, rocket = (next(photos.rglob(n)) for n in ("chelsea.png", "coffee.png", "rocket.jpg"))
    moon = next(photos.rglob("moon.png"))
    chelsea_id = store.image_by_path(collection.id, str(chelsea)).id
    rocket_id = store.image_by_path(collection.id, str(rocket)).id
    moon_id = store.image_by_path(collection.id, str(moon)).id
    coffee_id = store.image_by_path(collection.id, str(coffee)).id

    (photos / "new" / "deeper").mkdir(parents=True)
    moved = photos / "new" / "deeper" / "renamed cat.png"
    shutil.move(chelsea, moved)  # move + rename
    copy = photos / "rocket copy.jpg"
    shutil.copy(rocket, copy)  # a copy: same content, new row, stored vector reused
    os.utime(coffee, ns=(1_000_000_000, 1_000_000_000))  # touched: mtime changed, content not
    moon.unlink()

    report, encoder = run_index(library, photos)
    assert encoder.image_calls == 0, "moves, copies and touches reuse stored vectors"
    assert (report.moved, report.copied, report.removed, report.embedded) == (1, 1, 1, 0)
    assert store.image_by_path(collection.id, str(moved)).id == chelsea_id
    assert store.image_by_path(collection.id, str(chelsea)) is None
    copy_id = store.image_by_path(collection.id, str(copy)).id
    assert copy_id != rocket_id
    _, vectors = store.embeddings([copy_id, rocket_id], collection.dim)
    np.testing.assert_array_equal(vectors[0], vectors[1])
    touched = store.image_by_path(collection.id, str(coffee))
    assert touched.id == coffee_id and touched.mtime_ns == 1_000_000_000
    assert store.images([moon_id]) == {}
    assert moon_id not in library.vectors(library.collection()).ids()
    assert_consistent(library)
    assert library.searcher().by_image_file(moved, k=1)[0].id == chelsea_id


def test_changed_file_is_embedded_again(library: Library, photos: Path) -> None:
    run_index(library, photos)
    collection = library.collection()
    target = next(photos.rglob("coffee.png"))
    old_id = library.store.image_by_path(collection.id, str(target)).id
    shutil.copy(next(photos.rglob("astronaut.png")), target)  # new content at the same path
    report, encoder = run_index(library, photos)
    # The new content equals astronaut's, so its vector is reused; the old coffee row is gone.
    assert report.embedded == 0 and report.copied == 1 and encoder.image_calls == 0
    row = library.store.image_by_path(collection.id, str(target))
    assert row.id != old_id and library.store.images([old_id]) == {}
    assert_consistent(library)


def test_hostile_files_never_crash_a_run_and_are_reported(library: Library, tmp_path: Path) -> None:
    root = tmp_path / "hostile"
    expected = make_hostile_tree(root)
    report, _ = run_index(library, root)
    failed = {Path(path).relative_to(root).as_posix(): reason for path, reason in report.failed}
    should_fail = {rel for rel, outcome in expected.items() if outcome == "fail"}
    should_pass = {rel for rel, outcome in expected.items() if outcome == "ok"}
    assert should_fail <= set(failed), set(should_fail) - set(failed)
    assert not (should_pass & set(failed)), {rel: failed[rel] for rel in should_pass & set(failed)}
    assert all(reason for reason in failed.values())
    collection = library.collection()
    stats = library.store.stats(collection.id)
    assert stats.indexed == len(should_pass) and stats.failed == len(failed)
    assert_consistent(library)
    # Failures are remembered: an unchanged bad file is not retried, unless asked.
    again, encoder = run_index(library, root)
    assert again.failed == [] and encoder.image_calls == 0
    retried, _ = run_index(library, root, retry_failed=True)
    assert len(retried.failed) == len(failed)


def after_the_walk(change: Callable[[], None]) -> Callable[[int, int], None]:
    """A progress callback that makes ``change`` once: its first call comes after the walk, before
    any file is read, which is when a hostile user swaps what a walked path holds."""
    done: list[bool] = []

    def progress(_done: int, _total: int) -> None:
        if not done:
            done.append(True)
            change()

    return progress


@pytest.mark.timeout(20)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_file_replaced_by_a_fifo_after_the_walk_fails_alone(library: Library, photos: Path) -> None:
    """Reading a FIFO by name blocks until a writer comes: forever. The run must go on."""
    target = next(photos.rglob("coffee.png"))

    def to_fifo() -> None:
        target.unlink()
        os.mkfifo(target)

    report, _ = run_index(library, photos, progress=after_the_walk(to_fifo))
    assert (str(target), "not a regular file") in report.failed
    assert report.embedded >= 25
    assert_consistent(library)


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="needs O_NOFOLLOW")
def test_symlinks_swapped_in_after_the_walk_are_not_followed(
    library: Library, photos: Path, tmp_path: Path
) -> None:
    """With follow_symlinks=False (the server's walk) a file or folder replaced by a symlink after
    the walk must not be read through it: its target's content never enters the index."""
    outside = tmp_path / "outside"
    (outside / "outdoor").mkdir(parents=True)
    secret = outside / "secret.png"
    Image.new("RGB", (64, 64), "red").save(secret)
    target = next((photos / "indoor").glob("*.png"))
    outdoor = sorted((photos / "outdoor").iterdir())
    for path in outdoor:  # same names, all the red secret: any read through the link embeds it
        shutil.copy(secret, outside / "outdoor" / path.name)

    def to_links() -> None:
        target.unlink()
        target.symlink_to(secret)
        shutil.rmtree(photos / "outdoor")
        (photos / "outdoor").symlink_to(outside / "outdoor")

    report, _ = run_index(library, photos, follow_symlinks=False, progress=after_the_walk(to_links))
    failed = dict(report.failed)
    assert failed.get(str(target)) == "symlink (not followed)"
    folder_refused = "a folder on the path is a symlink or not a folder"
    assert {failed.get(str(path)) for path in outdoor} == {folder_refused}
    secret_hash = hashlib.sha256(secret.read_bytes()).hexdigest()
    assert not library.store.indexed_by_hash(library.collection().id, [secret_hash])
    assert_consistent(library)


def test_filtered_search_returns_k_when_k_match(library: Library, photos: Path) -> None:
    run_index(library, photos)
    searcher = library.searcher()
    outdoor = str(photos / "outdoor")
    hits = searcher.by_text("a photo", k=5, filters=SearchFilters(folders=(outdoor,)))
    assert len(hits) == 5 and all(hit.path.startswith(outdoor + os.sep) for hit in hits)
    jpegs = searcher.by_text("a photo", k=50, filters=SearchFilters(formats=("JPEG",)))
    assert {Path(h.path).suffix for h in jpegs} == {".jpg"} and len(jpegs) == len(list(photos.rglob("*.jpg")))
    big = searcher.by_text("a photo", k=3, filters=SearchFilters(min_width=600, min_height=500))
    assert len(big) == 3 and all(h.width >= 600 and h.height >= 500 for h in big)


def test_collection_refuses_another_model(settings: Settings, dual_dir: Path, photos: Path) -> None:
    from pixseek.store.repository import CollectionMismatchError

    library = Library(settings)
    run_index(library, photos)
    other = Library(settings.model_copy(update={"model": str(dual_dir)}))
    with pytest.raises(CollectionMismatchError, match="cannot be mixed"):
        other.indexer(other.load_encoder())
    with pytest.raises(CollectionMismatchError, match="is not the model"):
        other.searcher(str(dual_dir)).by_text("a cat")
    library.close()
    other.close()


def test_undecodable_file_name_is_reported_not_fatal(library: Library, photos: Path) -> None:
    raw = os.fsencode(photos / "indoor") + b"/caf\xe9.png"  # Latin-1 bytes: not valid UTF-8
    with open(raw, "wb") as handle:
        handle.write(next(photos.rglob("coffee.png")).read_bytes())
    report, _ = run_index(library, photos)
    assert [reason for _, reason in report.failed if "UTF-8" in reason] == [
        "file name is not valid UTF-8; rename the file"
    ]
    assert report.embedded >= 25
    assert_consistent(library)


def test_index_and_search_on_each_database(database_url: str, settings: Settings, photos: Path) -> None:
    library = Library(settings.model_copy(update={"database_url": database_url}))
    report, _ = run_index(library, photos / "indoor")
    assert report.embedded > 5 and library.store.stats(library.collection().id).indexed == report.embedded
    shutil.move(photos / "indoor", photos / "moved")
    moved, encoder = run_index(library, photos)
    assert moved.moved == report.embedded and encoder.image_calls > 0  # outdoor/ is new, indoor/ moved
    query = next((photos / "moved").rglob("*.png"))
    assert library.searcher().by_image_file(query, k=1)[0].path == str(query)
    assert_consistent(library)
    library.close()
