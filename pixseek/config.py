"""Settings shared by the CLI, the API and library use.

Every value can come from an environment variable (``PIXSEEK_DATA_DIR``, ``PIXSEEK_DATABASE_URL``,
``PIXSEEK_MODEL``...) so that a server, a container and a shell agree without repeating flags.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pixseek.vocabulary import ImageRuntime, IndexKind, Precision, RerankChoice

DEFAULT_MODEL = "clip"
DEFAULT_COLLECTION = "default"  # the collection used when none is named and none is active
CUTOFF_Z = 3.0  # measured on the trained shapes model: docs/search.md, "Adaptive cutoff"
# Measured on a labelled near-duplicate set (docs/search.md, "Duplicates").
DUPLICATE_THRESHOLD = 0.9
DUPLICATE_MAX_DISTANCE = 12
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_bytes(text: str | int) -> int:
    """'8G', '512MB', '1.5g' or a plain number of bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 8G, 512M or a number of bytes)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** "bkmgt".index(unit or "b"))


def default_data_dir() -> Path:
    """XDG data directory, so the index survives like any other user data (not in a cache dir)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "pixseek"


def default_cache_dir() -> Path:
    """XDG cache directory: compiled image towers are derived from the checkpoints, safe to delete."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pixseek"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIXSEEK_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file in the data directory"
    )
    collection: str | None = Field(
        default=None,
        description="collection to use; default: the active one (`pixseek collections activate`), "
        f"else {DEFAULT_COLLECTION!r}",
    )
    model: str | None = Field(
        default=None,
        description=f"preset, hub id or local dir; default: the collection's own model, else {DEFAULT_MODEL}",
    )
    device: str = "auto"
    precision: Precision = Precision.AUTO
    image_runtime: ImageRuntime = Field(
        default=ImageRuntime.AUTO,
        description="what runs the image tower: auto (OpenVINO on a CPU when installed), torch, openvino",
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        description="derived files kept between runs (compiled image towers); safe to delete",
    )
    batch_size: int = Field(default=32, ge=1, le=4096)
    decode_workers: int = Field(default_factory=lambda: max(2, os.cpu_count() or 2), ge=1)
    # Re-ranking of text queries (pixseek.search.rerank). Off by default: each re-ranker is an extra
    # multi-GB checkpoint that the user opts into.
    rerank: RerankChoice = RerankChoice.NONE
    rerank_k: int | None = Field(
        default=None, ge=1, le=10_000, description="candidates to re-rank; default 50 on CPU, 128 on CUDA"
    )
    bridgetower_model: str = Field(default="bridgetower", description="preset, hub id or local dir")
    blip2_model: str = Field(default="blip2", description="preset (blip2, blip2-coco), hub id or local dir")
    rerank_cache_mb: int = Field(
        default=4096, ge=0, description="disk budget per re-ranker for cached image features; 0: off"
    )
    # The vector index (pixseek.store.ann): chosen by collection size and memory budget, its search
    # parameters tuned to the recall target and stored with it; the overrides beat the tuned values.
    index_type: IndexKind = IndexKind.AUTO
    memory_budget: str | None = Field(
        default=None, description="memory for the vector index, e.g. 8G; default: half the available RAM"
    )
    recall_target: float = Field(default=0.95, gt=0, le=1, description="recall@10 the tuning aims for")
    nprobe: int | None = Field(default=None, ge=1, description="IVF lists visited per query (override)")
    ef_search: int | None = Field(default=None, ge=1, description="HNSW search breadth (override)")
    k_factor: int | None = Field(
        default=None, ge=1, description="IVF-PQ: candidates re-ranked exactly, as a multiple of k (override)"
    )
    # Image files (pixseek.media): a larger file is recorded as failed without being read, so a
    # sparse or padded multi-GB ".jpg" cannot take GBs of RAM per decode worker.
    max_file_size: str = Field(default="256M", description="largest image file read, e.g. 256M")
    # The adaptive cutoff (pixseek.search.cutoff): how many robust standard deviations above the
    # query's background score a match lies; lower keeps more. Default measured in docs/search.md.
    cutoff_z: float = Field(default=CUTOFF_Z, gt=0, le=50, description="strictness of --cutoff auto")
    # Duplicate finding (pixseek.service.duplicates): a neighbour pair at this cosine or above is a
    # candidate, kept when the perceptual hashes differ in at most this many of 64 bits.
    duplicate_threshold: float = Field(default=DUPLICATE_THRESHOLD, gt=0, le=1)
    duplicate_max_distance: int = Field(default=DUPLICATE_MAX_DISTANCE, ge=0, le=64)
    # Sharded search (pixseek.distributed.sharded_serving, docs/distributed.md "Sharded serving").
    ray_address: str | None = Field(
        default=None,
        description="Ray cluster whose shard actors answer searches instead of the local index "
        "(PIXSEEK_RAY_ADDRESS): auto, HOST:6379, ray://HOST:10001, or local (a Ray on this machine); "
        "indexing still writes SQL and the local index, and the shards catch up from SQL",
    )

    @field_validator("memory_budget")
    @classmethod
    def _valid_size(cls, value: str | None) -> str | None:
        if value is not None:
            parse_bytes(value)
        return value

    @field_validator("max_file_size")
    @classmethod
    def _valid_file_size(cls, value: str) -> str:
        if parse_bytes(value) < 1:
            raise ValueError(f"must be at least 1 byte, got {value!r}")
        return value

    @property
    def max_file_bytes(self) -> int:
        return parse_bytes(self.max_file_size)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'pixseek.db'}"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "indexes"

    @property
    def rerank_cache_dir(self) -> Path:
        return self.data_dir / "rerank-cache"
