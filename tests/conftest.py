"""Shared fixtures: tiny offline checkpoints, sample photos, and the SQL backends to test on.

Nothing here touches the network: checkpoints are built from small configs and saved with
``save_pretrained``; photos are scikit-image's samples plus generated ones.
"""

from __future__ import annotations

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Compiled image towers (pixseek.embedding.openvino_tower) go to a cache of this test session, not
# the user's: each session-wide tiny checkpoint is exported once, as a user's model would be.
os.environ["PIXSEEK_CACHE_DIR"] = tempfile.mkdtemp(prefix="pixseek-test-cache-")

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import skimage
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from sqlalchemy import create_engine, text

from api_client import wait_for_job
from pixseek.api.app import create_app
from pixseek.api.config import ServerSettings
from pixseek.config import Settings
from pixseek.testing.tiny_models import (
    build_altclip,
    build_blip2,
    build_bridgetower,
    build_clip,
    build_dual_encoder,
)

POSTGRES_ADMIN_URL = os.environ.get(
    "PIXSEEK_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SAMPLE_SUFFIXES = {".png", ".jpg", ".gif", ".tif"}


def pytest_unconfigure() -> None:
    shutil.rmtree(os.environ["PIXSEEK_CACHE_DIR"], ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Ray tests start a local Ray (seconds each): slow, left out of the everyday run."""
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def dual_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dual_encoder(tmp_path_factory.mktemp("dual"))


@pytest.fixture(scope="session")
def altclip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_altclip(tmp_path_factory.mktemp("altclip"))


@pytest.fixture(scope="session")
def sample_photo_paths() -> list[Path]:
    folder = Path(skimage.__file__).parent / "data"
    return sorted(p for p in folder.iterdir() if p.suffix in SAMPLE_SUFFIXES)


@pytest.fixture
def photos(tmp_path: Path, sample_photo_paths: list[Path]) -> Path:
    """A private copy of scikit-image's sample photos (PNG, JPEG, GIF, TIFF, greyscale) in sub-folders."""
    root = tmp_path / "photos"
    for i, source in enumerate(sample_photo_paths):
        folder = root / ("outdoor" if i % 2 else "indoor")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, folder / source.name)
    return root


def _postgres_available() -> bool:
    try:
        with create_engine(POSTGRES_ADMIN_URL).connect() as connection:
            connection.execute(text("select 1"))
        return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database per test on each backend; CI must have PostgreSQL, so it fails there."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pixseek.db'}"
        return
    if not _postgres_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but {POSTGRES_ADMIN_URL} is unreachable")
        pytest.skip("no PostgreSQL server reachable")
    name = f"pixseek_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def cli_env(tmp_path: Path, clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment a CLI test runs in: a private data dir, the tiny CLIP, fp32. Returns the data dir."""
    data = tmp_path / "data"
    monkeypatch.setenv("PIXSEEK_DATA_DIR", str(data))
    monkeypatch.setenv("PIXSEEK_MODEL", str(clip_dir))
    monkeypatch.setenv("PIXSEEK_PRECISION", "fp32")
    return data


@pytest.fixture
def server_settings(tmp_path: Path, clip_dir: Path, photos: Path) -> ServerSettings:
    """A server over the sample photos with the tiny CLIP, fp32: what the API tests run."""
    return ServerSettings(
        data_dir=tmp_path / "data",
        model=str(clip_dir),
        precision="fp32",
        device="cpu",
        batch_size=8,
        library_roots=[photos],
    )


@pytest.fixture
def client(server_settings: ServerSettings) -> Iterator[TestClient]:
    """That server in-process, its roots indexed."""
    with TestClient(create_app(server_settings)) as client:
        assert wait_for_job(client, client.post("/index").json()["id"])["state"] == "done"
        yield client


@pytest.fixture
def settings(tmp_path: Path, clip_dir: Path) -> Settings:
    """Library settings on a private data dir with the tiny CLIP checkpoint, fp32 for exact checks."""
    return Settings(
        data_dir=tmp_path / "data",
        model=str(clip_dir),
        precision="fp32",
        device="cpu",
        batch_size=8,
        decode_workers=2,
    )


@pytest.fixture(scope="session")
def bridgetower_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny BridgeTowerForImageAndTextRetrieval + BridgeTowerProcessor (RoBERTa BPE tokenizer)."""
    return build_bridgetower(tmp_path_factory.mktemp("bridgetower"))


@pytest.fixture(scope="session")
def blip2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny Blip2ForImageTextRetrieval + Blip2Processor (BERT WordPiece tokenizer with <image>)."""
    return build_blip2(tmp_path_factory.mktemp("blip2"))


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    """14 distinct PNGs: shapes on noise, aspect ratios within what the tiny BridgeTower's 32 px
    processor accepts (up to ~1.6)."""
    root = tmp_path / "gallery"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(14):
        w, h = (64, 48) if i % 3 else (48, 64)
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        ImageDraw.Draw(image).ellipse((8 + i, 6, 40, 30 + i), fill=colour)
        image.save(root / f"img_{i:02d}.png")
    return root


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray for the session (2 CPUs, like CI), shut down at the end."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'pixseek[ray]')")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    if started:
        ray.shutdown()
