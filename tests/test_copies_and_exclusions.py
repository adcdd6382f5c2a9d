"""Copies keep their metadata and cost one model call per content; `rm` keeps paths out of later
runs until `rm --undo`; the folders a collection was indexed from are recorded (issue 12)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from cli_runner import cli, runner
from pixseek.cli import app
from pixseek.config import Settings
from pixseek.library import Library, SearchFilters
from pixseek.store.database import open_database
from test_indexer import CountingEncoder, assert_consistent, run_index

METADATA = ("format", "width", "height", "taken_at", "camera", "orientation", "gps_lat", "gps_lon")


@pytest.fixture
def library(settings: Settings):
    with Library(settings) as library:
        yield library


def _metadata(library: Library, path: Path) -> tuple:
    record = library.store.image_by_path(library.collection().id, str(path))
    return tuple(getattr(record, name) for name in METADATA)


def test_a_copy_indexed_later_keeps_its_metadata_and_matches_filters(library: Library, photos: Path) -> None:
    run_index(library, photos)
    rocket = next(photos.rglob("rocket.jpg"))
    copy = photos / "elsewhere" / "rocket copy.jpg"
    copy.parent.mkdir()
    shutil.copy(rocket, copy)
    report, encoder = run_index(library, photos)
    assert report.copied == 1 and encoder.image_calls == 0
    assert _metadata(library, copy) == _metadata(library, rocket)
    assert _metadata(library, copy)[0] == "JPEG"
    jpegs = library.searcher().by_text("a rocket", 50, SearchFilters(formats=("JPEG",)))
    assert str(copy) in [hit.path for hit in jpegs]


def test_copies_within_one_run_are_embedded_once(library: Library, photos: Path) -> None:
    chelsea = next(photos.rglob("chelsea.png"))
    for n in range(3):
        shutil.copy(chelsea, photos / f"cat copy {n}.png")
    total = sum(1 for _ in photos.rglob("*.*"))
    report, encoder = run_index(library, photos)
    assert report.copied == 3, report
    assert report.embedded + report.copied + len(report.failed) == total
    assert encoder.images_embedded == report.embedded, "one model call per distinct content"
    assert (
        len(
            {_metadata(library, photos / f"cat copy {n}.png") for n in range(3)}
            | {_metadata(library, chelsea)}
        )
        == 1
    )
    assert_consistent(library)


def test_copies_within_one_run_across_batches_reuse_the_committed_vector(
    settings: Settings, tmp_path: Path, photos: Path
) -> None:
    """With a batch of 2 and one decode thread, the copy's worker looks before the original's batch
    is committed; the batch that holds the copy must still find it and reuse its vector."""
    with Library(settings.model_copy(update={"batch_size": 2, "decode_workers": 1})) as library:
        chelsea = next(photos.rglob("chelsea.png"))
        shutil.copy(chelsea, photos / "zz cat copy.png")  # sorted last: many batches after the original
        report, encoder = run_index(library, photos)
        assert report.copied == 1 and encoder.images_embedded == report.embedded
        _, vectors = library.store.embeddings(
            [
                library.store.image_by_path(library.collection().id, str(p)).id
                for p in (chelsea, photos / "zz cat copy.png")
            ],
            library.collection().dim,
        )
        assert (vectors[0] == vectors[1]).all()


def test_migration_backfills_metadata_of_copies_indexed_before_the_fix(tmp_path: Path) -> None:
    """A database at revision 0001 holding a copy without metadata gets it from its original."""
    from alembic import command

    from pixseek.store.database import _alembic_config, create_store_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_store_engine(url)
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    engine.dispose()
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute(
            "INSERT INTO collections (id, name, model_id, model_fingerprint, dim, precision, generation, "
            "created_at) VALUES (1, 'default', 'm', 'f', 4, 'fp32', 1, '2026-01-01')"
        )
        row = (
            "INSERT INTO images (collection_id, path, size, mtime_ns, content_hash, status, format, width, "
            "height, camera, indexed_at) VALUES (1, ?, 1, 1, ?, 'indexed', ?, ?, ?, ?, '2026-01-01')"
        )
        db.execute(row, ("/a.png", "h1", "PNG", 640, 480, "Canon"))
        db.execute(row, ("/copy of a.png", "h1", None, None, None, None))
        db.execute(row, ("/lonely.png", "h2", None, None, None, None))  # no original: stays as it is
    open_database(url).dispose()
    with sqlite3.connect(tmp_path / "old.db") as db:
        rows = dict(
            (path, (fmt, w, h, camera))
            for path, fmt, w, h, camera in db.execute(
                "SELECT path, format, width, height, camera FROM images"
            )
        )
    assert rows["/copy of a.png"] == ("PNG", 640, 480, "Canon")
    assert rows["/lonely.png"] == (None, None, None, None)


def test_rm_keeps_a_folder_out_until_undone(cli_env: Path, photos: Path) -> None:
    cli("index", str(photos))
    before = json.loads(cli("status", "--json"))["collections"][0]
    assert before["roots"] == [str(photos)]
    output = cli("rm", str(photos / "indoor"))
    assert "kept out" in output and "removed" in output and "images" in output

    report = json.loads(cli("index", str(photos), "--json"))
    assert report["embedded"] == 0, "the removed folder must not come back"
    (status,) = json.loads(cli("status", "--json"))["collections"]
    assert status["excluded"] == [str(photos / "indoor")]
    assert 0 < status["indexed"] < before["indexed"]
    assert str(photos / "indoor") in cli("status")
    hits = json.loads(cli("search", "a cat", "-k", "50", "--json"))
    assert not any("/indoor/" in hit["path"] for hit in hits)

    # Indexing the removed folder itself asks for two opposite things: one line, exit 2.
    refused = runner.invoke(app, ["index", str(photos / "indoor")])
    assert refused.exit_code == 2 and "pixseek rm --undo" in refused.output
    assert len(refused.output.strip().splitlines()) == 1

    cli("rm", "--undo", str(photos / "indoor"))
    again = json.loads(cli("index", str(photos), "--json"))
    assert again["embedded"] > 0
    assert json.loads(cli("status", "--json"))["collections"][0]["excluded"] == []


def test_rm_of_a_path_that_matches_nothing_says_so(cli_env: Path, photos: Path) -> None:
    cli("index", str(photos))
    result = runner.invoke(app, ["rm", str(photos / "no-such-folder")])
    assert result.exit_code == 2 and "nothing in collection 'default' at" in result.output
    assert json.loads(cli("status", "--json"))["collections"][0]["excluded"] == []
    undo = runner.invoke(app, ["rm", "--undo", str(photos / "indoor")])
    assert undo.exit_code == 2 and "is not kept out" in undo.output


def test_watcher_honours_exclusions(library: Library, photos: Path) -> None:
    from pixseek.indexer.watch import Watcher, WatchOptions

    run_index(library, photos)
    library.remove([photos / "indoor"])
    watcher = Watcher(library.indexer(CountingEncoder(library.load_encoder())), [photos], WatchOptions())
    assert not watcher._accepts(photos, str(photos / "indoor" / "new.png"), False)
    assert not watcher._accepts(photos, str(photos / "indoor"), True)
    assert watcher._accepts(photos, str(photos / "outdoor" / "new.png"), False)


def test_index_records_its_outermost_roots(library: Library, photos: Path) -> None:
    run_index(library, photos / "indoor")
    assert library.roots() == [str(photos / "indoor")]
    run_index(library, photos)
    assert library.roots() == [str(photos)]
    run_index(library, photos / "outdoor")
    assert library.roots() == [str(photos)]


def test_unreadable_folder_is_reported_and_its_images_kept(
    library: Library, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root reads every folder whatever its mode, so the permission error is simulated."""
    import os

    run_index(library, photos)
    indexed = library.store.stats(library.collection().id).indexed
    real_scandir = os.scandir

    def scandir(path):
        if str(path) == str(photos / "indoor"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr("pixseek.indexer.walker.os.scandir", scandir)
    report, _ = run_index(library, photos)
    assert report.unreadable == [(str(photos / "indoor"), "unreadable folder: Permission denied")]
    assert report.removed == 0, "images of a folder that could not be listed are not gone"
    assert library.store.stats(library.collection().id).indexed == indexed
