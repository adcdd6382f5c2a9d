"""``pixseek index --ray``: Ray Data actors embed, the driver keeps the local indexer's rules.

On a local Ray with 2 CPUs (as in CI), compared with the local indexer on the same photos: the same
ids, paths, vectors and failures; a second run embeds nothing; moves and copies reuse vectors (the
actors look content hashes up in the store); an interrupted run resumes. Without Ray installed,
nothing imports it and ``--ray`` is a one-line error.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pixseek.cli import app
from pixseek.config import Settings
from pixseek.distributed.ray_indexing import ActorPlan, actor_error_reason, plan_actors, ray_indexer
from pixseek.errors import PixseekError
from pixseek.library import Library
from pixseek.store.vector_index import VectorIndex

try:
    import ray
except ImportError:  # the tests without Ray still run; the others skip
    ray = None

runner = CliRunner(env={"COLUMNS": "300"})


def _with_corrupt_file(photos: Path) -> Path:
    """A JPEG cut after its first 2 kB: a truncated upload, which must fail alone, with its reason."""
    jpeg = next(photos.rglob("*.jpg"))
    broken = photos / "indoor" / "broken upload.jpg"
    broken.write_bytes(jpeg.read_bytes()[:2048])
    return broken


def _snapshot(library: Library, root: Path) -> dict[str, tuple[int, np.ndarray]]:
    """Relative path -> (id, stored vector) of every indexed image, and FAISS checked against SQL."""
    collection = library.collection()
    ids = library.store.indexed_ids(collection.id)
    found, vectors = library.store.embeddings(ids.tolist(), collection.dim)
    records = library.store.images(found.tolist())
    saved = VectorIndex.load(library.index_path(collection), collection.dim)
    assert saved.generation == collection.generation, "the index file was saved after the last batch"
    assert sorted(saved.ids().tolist()) == sorted(ids.tolist())
    return {
        str(Path(records[int(i)].path).relative_to(root)): (int(i), v)
        for i, v in zip(found, vectors, strict=True)
    }


def _assert_same_index(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    assert {path: image_id for path, (image_id, _) in got.items()} == {
        path: image_id for path, (image_id, _) in expected.items()
    }, "files stored in input order: the same ids as a local run"
    for path, (_, vector) in got.items():
        np.testing.assert_allclose(vector, expected[path][1], atol=1e-5, err_msg=path)


def _local_reference(settings: Settings, photos: Path, tmp_path: Path):
    library = Library(settings.model_copy(update={"data_dir": tmp_path / "local"}))
    try:
        report = library.indexer(library.load_encoder()).run([photos])
        return report, _snapshot(library, photos)
    finally:
        library.close()


def _wait_for_idle_cpus(expected: float, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while ray.available_resources().get("CPU", 0) < expected:
        assert time.monotonic() < deadline, f"actors still hold CPUs: {ray.available_resources()}"
        time.sleep(0.2)


# ---- without Ray -----------------------------------------------------------------------------
def test_actor_plan_one_per_gpu_else_cpu_shares() -> None:
    assert plan_actors({"CPU": 64, "GPU": 4}) == ActorPlan(4, num_cpus=1, num_gpus=1)
    assert plan_actors({"CPU": 64, "GPU": 4}, actors=2) == ActorPlan(2, num_cpus=1, num_gpus=1)
    assert plan_actors({"CPU": 16}) == ActorPlan(4, num_cpus=4, num_gpus=0)
    assert plan_actors({"CPU": 2}) == ActorPlan(1, num_cpus=2, num_gpus=0)
    assert plan_actors({"CPU": 2}, actors=2) == ActorPlan(2, num_cpus=1, num_gpus=0)
    with pytest.raises(PixseekError):
        plan_actors({"CPU": 2}, actors=0)


def test_actor_errors_become_one_line() -> None:
    """The text of a Ray ActorDiedError (as Ray 2.60 words it) around a pixseek error in an actor's
    __init__: the CLI shows the pixseek reason, not Ray's traceback."""
    message = (
        "The actor died because of an error raised in its creation task, ray::MapWorker(MapBatches("
        'EmbedWorker)).__init__() (pid=1, ip=10.0.0.2)\n  File "pixseek/embedding/checkpoint.py", '
        "line 43, in load_config\n    raise ModelLoadError(...) from None\n"
        "pixseek.embedding.checkpoint.ModelLoadError: cannot load model '/models/x': no such folder\n"
    )
    assert actor_error_reason(message) == "cannot load model '/models/x': no such folder"
    assert actor_error_reason("ray.exceptions.OutOfMemoryError: node ran out of memory") is None


def test_without_ray_nothing_imports_it(tmp_path: Path, clip_dir: Path, photos: Path) -> None:
    """A fresh interpreter runs index and status and never loads ray; --ray there is a one-line error."""
    script = f"""
import sys
sys.modules["ray"] = None  # as if Ray were not installed: any import of it fails
from typer.testing import CliRunner
from pixseek.cli import app
import pixseek.distributed.ray_indexing, pixseek.distributed.sharded_search
base = ["--data-dir", {str(tmp_path / "data")!r}, "index", {str(photos)!r}, "--model", {str(clip_dir)!r},
        "--device", "cpu", "--precision", "fp32", "-q"]
assert CliRunner().invoke(app, base).exit_code == 0
assert CliRunner().invoke(app, ["--data-dir", {str(tmp_path / "data")!r}, "status"]).exit_code == 0
result = CliRunner().invoke(app, [*base, "--ray"])
print(result.exit_code)
print(result.output.strip())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    code, *lines = done.stdout.strip().splitlines()
    assert code == "2" and len(lines) == 1, done.stdout
    assert "pip install 'pixseek[ray]'" in lines[0]


def test_ray_options_in_help_and_checked(photos: Path) -> None:
    help_text = runner.invoke(app, ["index", "--help"]).output
    assert "--ray " in help_text and "--ray-address" in help_text and "--ray-actors" in help_text
    assert "pip install 'pixseek[ray]'" in help_text
    result = runner.invoke(app, ["index", str(photos), "--ray-actors", "2"])
    assert result.exit_code == 2 and "--ray-actors needs --ray" in result.output


# ---- with a local Ray ------------------------------------------------------------------------
@pytest.mark.ray
def test_same_index_as_local_then_nothing_then_moves_reuse(
    ray_cluster, settings: Settings, photos: Path, tmp_path: Path
) -> None:
    broken = _with_corrupt_file(photos)
    local_report, expected = _local_reference(settings, photos, tmp_path)
    library = Library(settings)
    try:
        encoder = library.load_encoder()
        report = ray_indexer(library, encoder, actors=2).run([photos])
        assert report.embedded == local_report.embedded >= 25
        assert sorted(report.failed) == sorted(local_report.failed)
        assert (str(broken), "truncated image") in report.failed, report.failed
        _assert_same_index(_snapshot(library, photos), expected)
        record = library.store.image_by_path(library.collection().id, str(broken))
        assert record.status == "failed" and record.error == "truncated image"

        again = ray_indexer(library, encoder, actors=2).run([photos])
        assert (again.embedded, again.changes, again.unchanged) == (0, 0, report.scanned)

        # a move and a copy: the actors find the content hashes in the store, no vector is recomputed
        chelsea, rocket = next(photos.rglob("chelsea.png")), next(photos.rglob("rocket.jpg"))
        moved, copy = photos / "new" / "cat.png", photos / "rocket copy.jpg"
        moved.parent.mkdir()
        shutil.move(chelsea, moved)
        shutil.copy(rocket, copy)
        changed = ray_indexer(library, encoder, actors=1).run([photos])
        assert (changed.moved, changed.copied, changed.embedded, changed.removed) == (1, 1, 0, 0)
        after = _snapshot(library, photos)
        chelsea_key, rocket_key = str(chelsea.relative_to(photos)), str(rocket.relative_to(photos))
        assert after["new/cat.png"][0] == expected[chelsea_key][0], "a moved file keeps its id"
        np.testing.assert_array_equal(after["rocket copy.jpg"][1], after[rocket_key][1])
    finally:
        library.close()


@pytest.mark.ray
def test_interrupted_run_resumes(
    ray_cluster, settings: Settings, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, expected = _local_reference(settings, photos, tmp_path)
    library = Library(settings)

    def interrupt(done: int, total: int) -> None:
        if done >= 12:  # after the first batch of 8 was stored, while the second one fills
            raise KeyboardInterrupt

    try:
        indexer = ray_indexer(library, library.load_encoder(), actors=1)
        with pytest.raises(KeyboardInterrupt):
            indexer.run([photos], progress=interrupt)
        stored = library.store.indexed_ids(library.collection().id)
        assert 0 < len(stored) < len(expected)
        known = library.store.known_files(library.collection().id, [str(photos)])  # failures too
        # the index file matches SQL even so, and the actors gave their CPUs back
        saved = VectorIndex.load(library.index_path(library.collection()), library.collection().dim)
        assert sorted(saved.ids().tolist()) == sorted(stored.tolist())
        _wait_for_idle_cpus(2)
    finally:
        library.close()

    # resumed from the command line, as a user would, with the default actor plan (one actor with
    # both CPUs here): only what is missing is embedded
    for name, value in {"DATA_DIR": settings.data_dir, "MODEL": settings.model, "PRECISION": "fp32"}.items():
        monkeypatch.setenv(f"PIXSEEK_{name}", str(value))
    result = runner.invoke(
        app,
        [
            "index",
            str(photos),
            "--device",
            "cpu",
            "--batch-size",
            "8",
            "--ray",
            "--ray-actors",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["embedded"] == len(expected) - len(stored)
    assert summary["unchanged"] == len(known)
    resumed = Library(settings)
    try:
        _assert_same_index(_snapshot(resumed, photos), expected)
    finally:
        resumed.close()


@pytest.mark.ray
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_as_in_production(
    ray_cluster, database_url: str, settings: Settings, photos: Path, tmp_path: Path
) -> None:
    """The production set-up: the actors open the driver's PostgreSQL URL for their hash lookups
    (moves and copies through them are checked on SQLite above: the same SQLAlchemy queries)."""
    _, expected = _local_reference(settings, photos, tmp_path)
    library = Library(settings.model_copy(update={"database_url": database_url}))
    try:
        encoder = library.load_encoder()
        report = ray_indexer(library, encoder, actors=1).run([photos])
        assert report.embedded == len(expected)
        _assert_same_index(_snapshot(library, photos), expected)
    finally:
        library.close()
