"""Request and response models of the REST API: the OpenAPI document at /docs is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_K = 200
MAX_OFFSET = 10_000


class Filters(BaseModel):
    """Narrow a search; every field is optional. Applied inside the vector search, so a page is full
    whenever enough matching images exist."""

    model_config = ConfigDict(extra="forbid")

    folders: list[str] = Field(
        default=[], description="Folders relative to a library root, e.g. '2021/summer'"
    )
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    min_width: int | None = Field(default=None, ge=1, le=1_000_000)
    min_height: int | None = Field(default=None, ge=1, le=1_000_000)
    formats: list[Literal["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "HEIF", "AVIF"]] = []


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=1000, description="Text in any language the model knows")
    k: int = Field(default=24, ge=1, le=MAX_K, description="Results per page")
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET, description="Results to skip (pagination)")
    filters: Filters = Filters()
    rerank: Literal["none", "bridgetower", "blip2", "both"] | None = Field(
        default=None,
        description="Re-rank the first-stage candidates with ITM heads; default: the server's --rerank. "
        "Only re-rankers the server loaded (GET /status: rerankers) can be asked for",
    )
    rerank_k: int | None = Field(
        default=None, ge=1, le=512, description="Candidates to re-rank (default 50 on CPU, 128 on CUDA)"
    )
    min_score: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Drop results whose fused ITM probability is lower"
    )

    @field_validator("query")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query is blank")
        return value.strip()


class ImageInfo(BaseModel):
    id: int
    path: str = Field(description="Path relative to its library root")
    root: str = Field(description="Library root the image belongs to")
    format: str | None
    width: int | None
    height: int | None
    size_bytes: int
    taken_at: datetime | None
    camera: str | None
    gps_lat: float | None
    gps_lon: float | None
    thumbnail_url: str
    file_url: str
    similar_url: str


class SearchResult(BaseModel):
    image: ImageInfo
    score: float = Field(description="First-stage cosine similarity")
    rerank_scores: dict[str, float] = Field(default={}, description="ITM match probability per re-ranker")
    final_score: float | None = Field(
        default=None,
        description="Fused ITM probability (mean over re-rankers) that ordered a re-ranked search",
    )
    rerank_error: str | None = Field(default=None, description="Why this candidate could not be re-ranked")


class SearchResponse(BaseModel):
    results: list[SearchResult]
    offset: int
    k: int
    next_offset: int | None = Field(description="Offset of the next page, or null when this one is the last")
    took_ms: float


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        default=None,
        description="A sub-path of a library root ('ROOT_NAME/sub/folder'); omit to index every root",
    )


class JobInfo(BaseModel):
    id: str
    state: Literal["queued", "running", "done", "failed"]
    paths: list[str]
    done: int
    total: int | None
    embedded: int
    failed: int
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class VectorIndexStatus(BaseModel):
    """The collection's FAISS index (docs/scaling.md)."""

    type: str = Field(description="flat, ivf, ivfpq or hnsw")
    factory: str = Field(description="FAISS index factory string of the trained base")
    base_vectors: int
    delta_vectors: int = Field(description="Vectors added since the base was built (searched exactly)")
    tombstones: int = Field(description="Base vectors removed since it was built (masked)")
    params: dict[str, int] = Field(description="Search parameters in use (tuned, or overridden)")
    measured_recall: float | None = Field(description="recall@10 the parameters were measured at")
    recall_target: float
    bytes_per_vector: int = Field(description="Index memory per vector (codes and id)")
    gpus: int
    maintenance_running: bool = Field(description="A new base is being built in the background")
    last_maintenance_error: str | None


class CollectionStatus(BaseModel):
    name: str
    model: str
    dim: int
    precision: str
    indexed: int
    failed: int
    vectors: int
    index: VectorIndexStatus


class WatchedRoot(BaseModel):
    path: str = Field(description="Root name")
    mode: str = Field(description="inotify (or the platform's native observer), polling, or starting")
    reason: str | None = Field(description="Why the root is polled, when it is")


class WatcherStatus(BaseModel):
    phase: Literal["starting", "reconciling", "watching", "stopped"]
    roots: list[WatchedRoot]
    pending: int = Field(description="Changed paths waiting to settle, plus rescans not yet run")
    last_error: str | None
    last_error_at: datetime | None
    last_change_at: datetime | None
    totals: dict[str, int] = Field(description="embedded, moved, copied, removed, failed since start")


class StatusResponse(BaseModel):
    version: str
    collection: CollectionStatus | None
    roots: dict[str, str] = Field(description="Library root name -> absolute path")
    device: str | None
    jobs: list[JobInfo]
    rerankers: list[str] = Field(description="Re-rankers this server loaded (pixseek serve --rerank)")
    watcher: WatcherStatus | None = Field(description="Folder watch state (pixseek serve --watch), or null")


class Problem(BaseModel):
    detail: str
