"""Request and response models of the REST API: the OpenAPI document at /docs is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pixseek.api.jobs import JobState
from pixseek.ocr.languages import TESSERACT_CODES
from pixseek.search.query import MAX_TERMS, MAX_WEIGHT
from pixseek.vocabulary import QUERY_BLANKS, Cutoff, OcrEngine, RerankChoice, SearchMode, SortOrder

MAX_K = 200
MAX_OFFSET = 10_000
MAX_FOLDERS = 100
MAX_FOLDER_LENGTH = 4096  # PATH_MAX on Linux

# EXIF stores the camera's local time and no timezone (OffsetTimeOriginal is rare): what the API
# returns is that wall-clock time, ISO 8601 without an offset, which JSON Schema's date-time
# (RFC 3339: the offset is required) would misdescribe.
CAMERA_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?$"
CameraTime = Annotated[
    datetime,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": CAMERA_TIME_PATTERN,
            "description": "When the photo was taken, from EXIF: the camera's local time, ISO 8601 "
            "without a timezone (EXIF records none), e.g. 2021-06-01T18:30:00",
        }
    ),
]


def _json_number(value: object) -> object:
    """In a JSON body a number is a JSON number: pydantic's lax mode also took "5" and true,
    which the schema (and schemathesis' negative_data_rejection) call invalid."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON number")
    return value


def _json_text(value: object) -> object:
    """A date-time is a string (or null): lax mode read a number as a Unix time."""
    if value is not None and not isinstance(value, str):
        raise ValueError("must be a date-time string, e.g. 2021-06-01T00:00:00")
    return value


JsonInt = Annotated[int, BeforeValidator(_json_number)]


def _json_false(value: object) -> object:
    """``false`` itself: lax mode also read 0 and 0.0 as False, which the schema calls invalid."""
    if value is not False:
        raise ValueError("must be false, an object, or null")
    return value


JsonFalse = Annotated[Literal[False], BeforeValidator(_json_false)]
# Bounds go inside Annotated, before the validator: as Field(ge=...) of an optional field they
# reached the JSON schema as "ge"/"le", which no validator or generator reads.
Pixels = Annotated[int, Field(ge=1, le=1_000_000), BeforeValidator(_json_number)]
RerankK = Annotated[int, Field(ge=1, le=512), BeforeValidator(_json_number)]
Probability = Annotated[float, Field(ge=0.0, le=1.0), BeforeValidator(_json_number)]


def _wall_clock(value: datetime | None) -> datetime | None:
    """Filters compare with camera-local times, so an offset the client gave is dropped, never
    converted: with it, the result depended on the backend (PostgreSQL cast the column to the
    session's timezone, SQLite ignored the offset)."""
    return None if value is None else value.replace(tzinfo=None)


TakenFilter = Annotated[
    datetime | None,
    BeforeValidator(_json_text),
    AfterValidator(_wall_clock),
    Field(
        description="Compared with the camera-local time the photo was taken at (EXIF): a timezone "
        "offset, if given, is ignored; a time without one is also accepted"
    ),
]


class Filters(BaseModel):
    """Narrow a search; every field is optional. Applied inside the vector search, so a page is full
    whenever enough matching images exist."""

    model_config = ConfigDict(extra="forbid")

    folders: list[Annotated[str, Field(max_length=MAX_FOLDER_LENGTH)]] = Field(
        default=[],
        max_length=MAX_FOLDERS,
        description="Folders as ROOT_NAME/relative/path, e.g. 'Pictures/2021/summer': images under any "
        "of them",
    )
    taken_after: TakenFilter = None
    taken_before: TakenFilter = None
    min_width: Pixels | None = None
    min_height: Pixels | None = None
    formats: list[Literal["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "HEIF", "AVIF"]] = []


def _non_zero(value: float) -> float:
    if value == 0:
        raise ValueError("a term's weight is non-zero")
    return value


Weight = Annotated[
    float,
    Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT, json_schema_extra={"not": {"const": 0}}),
    BeforeValidator(_json_number),
    AfterValidator(_non_zero),
]
WeightField = Field(default=1.0, description="Non-zero; a negative weight subtracts the term")
Fraction = Annotated[float, Field(ge=0.0, le=1_000_000.0), BeforeValidator(_json_number)]
QueryText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1000,
        pattern="[^" + QUERY_BLANKS.encode("unicode_escape").decode() + "]",
        description="Text in any language the model knows (not only spaces)",
    ),
]


def _not_blank(value: str) -> str:
    """Stripped of the same blanks the schema's pattern names, so that the schema and this check
    agree on what a blank text is (str.strip() also strips \\x1c-\\x1f, \\x85...)."""
    stripped = value.strip(QUERY_BLANKS)
    if not stripped:
        raise ValueError("the text is blank")
    return stripped


class CropBox(BaseModel):
    """A region of an image: the search embeds that box instead of the whole picture."""

    model_config = ConfigDict(extra="forbid")

    x: Fraction
    y: Fraction
    width: Annotated[float, Field(gt=0.0, le=1_000_000.0), BeforeValidator(_json_number)]
    height: Annotated[float, Field(gt=0.0, le=1_000_000.0), BeforeValidator(_json_number)]
    unit: Literal["px", "fraction"] = Field(
        default="px",
        description="px: pixels of the upright (EXIF-oriented) image; fraction: of its width and height",
    )


class TextTerm(BaseModel):
    """A text term of a composed query."""

    model_config = ConfigDict(extra="forbid")

    text: QueryText
    weight: Weight = WeightField

    @field_validator("text")
    @classmethod
    def text_not_blank(cls, value: str) -> str:
        return _not_blank(value)


class ImageTerm(BaseModel):
    """An indexed image as a term of a composed query: its stored vector, or its region's."""

    model_config = ConfigDict(extra="forbid")

    # At most 2**53: a JSON number beyond it is not an exact integer (1e19 reads as a float).
    image_id: Annotated[int, Field(ge=1, le=2**53), BeforeValidator(_json_number)]
    weight: Weight = WeightField
    crop: CropBox | None = Field(default=None, description="Search by this region of the image")


def _term_kind(value: object) -> str:
    """A term that names an ``image_id`` is an image term; anything else is read as a text term
    (so a wrong one is reported against the text term's fields)."""
    if isinstance(value, ImageTerm) or (isinstance(value, dict) and "image_id" in value):
        return "image"
    return "text"


# One term of a composed query: a text or an indexed image, each with a weight; a negative weight
# pushes results away from the term (docs/search.md). A term with image_id is an image term.
Term = Annotated[
    Annotated[TextTerm, Tag("text")] | Annotated[ImageTerm, Tag("image")], Discriminator(_term_kind)
]
Terms = Annotated[list[Term], Field(max_length=MAX_TERMS - 1)]
SortField = Field(
    default=SortOrder.RELEVANCE,
    description="relevance, taken (oldest first), -taken (newest first) or path: any order but relevance "
    "lists every match above the cutoff (undated images last), and pages through all of them",
)
CutoffField = Field(
    default=None,
    description="auto: only results that stand out from the query's own score distribution; none: the "
    "top results; default auto when sorted by anything but relevance. A re-ranked search cuts with "
    "min_score instead",
)


ModeField = Field(
    default=None,
    description="hybrid: the embedding and the keyword index (OCR text, file names, EXIF/XMP titles, "
    "descriptions, keywords) fused by reciprocal rank; semantic: the embedding only; text: the words only, "
    '"quoted phrases" exact. Default: hybrid once the collection has keyword text, else semantic',
)


CollectionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]


class SearchRequest(BaseModel):
    """A text (``query``), a composed query (``terms``, with or without ``query``), or both."""

    # The schema says what something_to_search checks, so that clients and fuzzers know it.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["query"], "properties": {"query": {"type": "string"}}},
                # ...or a term with a positive weight (the default weight is 1).
                {
                    "required": ["terms"],
                    "properties": {
                        "terms": {"contains": {"properties": {"weight": {"exclusiveMinimum": 0}}}}
                    },
                },
            ]
        },
    )

    query: QueryText | None = None
    terms: Terms = Field(
        default=[],
        description="More terms: texts and indexed images, each weighted (a negative weight subtracts)",
    )
    collection: CollectionName | None = Field(
        default=None, description="Collection to search (GET /collections); default: the active one"
    )
    k: JsonInt = Field(default=24, ge=1, le=MAX_K, description="Results per page")
    offset: JsonInt = Field(default=0, ge=0, le=MAX_OFFSET, description="Results to skip (pagination)")
    filters: Filters = Filters()
    sort: SortOrder = SortField
    cutoff: Cutoff | None = CutoffField
    mode: SearchMode | None = ModeField
    rerank: (
        Literal[RerankChoice.NONE, RerankChoice.BRIDGETOWER, RerankChoice.BLIP2, RerankChoice.BOTH] | None
    ) = Field(
        default=None,
        description="Re-rank the first-stage candidates with ITM heads, which score the query's positive "
        "texts; default: the server's --rerank. Only re-rankers the server loaded (GET /status: "
        "rerankers) can be asked for",
    )
    rerank_k: RerankK | None = Field(
        default=None, description="Candidates to re-rank (default 50 on CPU, 128 on CUDA)"
    )
    min_score: Probability | None = Field(
        default=None, description="Drop results whose fused ITM probability is lower"
    )

    @field_validator("query")
    @classmethod
    def not_blank(cls, value: str | None) -> str | None:
        return None if value is None else _not_blank(value)

    @model_validator(mode="after")
    def something_to_search(self) -> SearchRequest:
        if self.query is None and not self.terms:
            raise ValueError("give a query, terms, or both")
        if self.query is None and not any(term.weight > 0 for term in self.terms):
            raise ValueError("without a query, a term needs a positive weight: negatives give no direction")
        return self


class ImageSearchForm(BaseModel):
    """The JSON parts of an upload search (POST /search/image) besides the file."""

    model_config = ConfigDict(extra="forbid")

    terms: Terms = []
    crop: CropBox | None = None
    filters: Filters = Filters()


class ImageInfo(BaseModel):
    id: int
    path: str = Field(description="Path relative to its library root")
    root: str = Field(description="Library root the image belongs to")
    format: str | None
    width: int | None
    height: int | None
    size_bytes: int
    taken_at: CameraTime | None
    camera: str | None
    gps_lat: float | None
    gps_lon: float | None
    thumbnail_url: str
    file_url: str
    similar_url: str


class MatchedWord(BaseModel):
    """Why a result matched a keyword query: a word of its OCR text (with its box in pixels of the
    upright image, so a client can highlight it) or a query word found in its name or metadata."""

    source: str = Field(description="ocr, filename, path, description, title or keywords")
    text: str
    box: list[float] | None = Field(description="[left, top, right, bottom] in pixels (OCR words only)")
    confidence: float | None


class SearchResult(BaseModel):
    image: ImageInfo
    score: float = Field(description="First-stage cosine similarity (in text mode: the keyword score)")
    keyword_score: float | None = Field(
        default=None, description="Keyword index score in (0, 1), for a hybrid or text search"
    )
    matches: list[MatchedWord] = Field(default=[], description="What of the image's texts matched")
    fused_score: float | None = Field(
        default=None, description="Reciprocal-rank fusion score that ordered a hybrid search"
    )
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
    query: str | None = Field(
        default=None, description="The query as searched: its terms, signed and weighted"
    )
    total: int | None = Field(
        default=None, description="How many results passed the cutoff, when the search counted them all"
    )
    cutoff: float | None = Field(default=None, description="The adaptive cutoff's cosine, when one applied")
    mode: SearchMode = Field(default=SearchMode.SEMANTIC, description="What the query was matched against")
    reranked_text: str | None = Field(
        default=None,
        description="What the re-rankers scored: the query's positive texts (null: not re-ranked)",
    )


def _known_language(code: str) -> str:
    if code not in TESSERACT_CODES:
        raise ValueError(f"unknown OCR language {code!r}; known: {', '.join(sorted(TESSERACT_CODES))}")
    return code


OcrLanguage = Annotated[
    str, AfterValidator(_known_language), WithJsonSchema({"type": "string", "enum": sorted(TESSERACT_CODES)})
]


class OcrRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    languages: list[OcrLanguage] | None = Field(
        default=None, min_length=1, max_length=16, description="ISO 639-1 codes; default: English"
    )
    engine: OcrEngine | None = Field(default=None, description="auto (default), rapidocr or tesseract")


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        default=None,
        description="A sub-path of a library root ('ROOT_NAME/sub/folder'); omit to index every root",
    )
    ocr: OcrRequest | JsonFalse | None = Field(
        default=None,
        description="Read the words in images for this and every later run of the collection (as "
        "`pixseek index --ocr`): an object turns OCR on, with its languages and engine; false turns "
        "it off (words read before stay searchable); omit to keep what the collection records",
    )


class JobInfo(BaseModel):
    id: str
    state: JobState
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


class OcrStatus(BaseModel):
    engine: str = Field(description="rapidocr or tesseract")
    languages: list[str] = Field(description="ISO 639-1 codes")


class BuildStatus(BaseModel):
    state: Literal["running", "done", "failed"]
    done: int
    total: int | None
    error: str | None


class CollectionItem(BaseModel):
    name: str
    model: str
    dim: int
    precision: str
    state: Literal["building", "ready"] = Field(description="building until its first full run finished")
    active: bool = Field(description="What a request without a collection uses")
    indexed: int
    failed: int
    ocr: OcrStatus | None
    build: BuildStatus | None = Field(description="This server's build of it, while or after it ran")


class CreateCollectionRequest(BaseModel):
    """A collection to build beside the active one, which keeps answering meanwhile."""

    model_config = ConfigDict(extra="forbid")

    name: CollectionName
    model: str = Field(min_length=1, max_length=1000, description="Preset, hub id or local checkpoint dir")
    paths: list[Annotated[str, StringConstraints(min_length=1, max_length=4096)]] | None = Field(
        default=None,
        max_length=64,
        description="Library roots or sub-paths ('ROOT_NAME/sub'); default: every library root",
    )


class CollectionStatus(BaseModel):
    name: str
    model: str
    dim: int
    precision: str
    ocr: OcrStatus | None = Field(
        default=None,
        description="The OCR every indexing run applies (`pixseek index --ocr`); null: none",
    )
    indexed: int = Field(
        description="Images indexed in the whole collection, including any indexed (e.g. by the CLI) "
        "from folders this server does not serve"
    )
    searchable: int = Field(
        description="Indexed images under the served library roots: what a search can return"
    )
    failed: int
    vectors: int
    index: VectorIndexStatus
    kept_out: list[str] = Field(
        description="What `pixseek rm` keeps out of the collection (ROOT_NAME/relative; "
        "'<server path>' outside the served roots); `pixseek rm --undo PATH` lets it back in"
    )


class WatchedRoot(BaseModel):
    path: str = Field(description="Root name")
    mode: str = Field(description="inotify (or the platform's native observer), polling, or starting")
    reason: str | None = Field(description="Why the root is polled, when it is")


WatcherPhase = Literal["starting", "reconciling", "watching", "stopped"]
WATCHER_PHASES: tuple[WatcherPhase, ...] = get_args(WatcherPhase)


class WatcherStatus(BaseModel):
    phase: WatcherPhase
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
    device: str | None = Field(
        description="Where and how the loaded model runs, e.g. 'cpu, bf16, OpenVINO images'; null "
        "until the first request that needs it"
    )
    jobs: list[JobInfo]
    rerankers: list[str] = Field(description="Re-rankers this server loaded (pixseek serve --rerank)")
    watcher: WatcherStatus | None = Field(description="Folder watch state (pixseek serve --watch), or null")
    served: str = Field(description="What this server serves and why, in one sentence")


class Problem(BaseModel):
    detail: str


MAX_GROUPS = 200  # duplicate groups per page
MAX_GROUP_OFFSET = 10_000_000


class DuplicateGroupInfo(BaseModel):
    kind: Literal["exact", "near"] = Field(
        description="exact: every member has the same bytes (content hash); near: joined by "
        "near-duplicate pairs, whose embeddings are neighbours at cosine >= threshold and whose "
        "perceptual hashes differ in at most max_distance bits"
    )
    keeper_id: int = Field(
        description="The image suggested to keep: the most pixels, then the largest file, then the "
        "oldest date taken, then the lowest id"
    )
    similarity: float = Field(description="Lowest cosine among the pairs that joined the group (1: exact)")
    distance: int = Field(description="Largest perceptual-hash distance among them, in bits of 64")
    members: list[ImageInfo] = Field(description="The keeper first, then by path")


class DuplicatesResponse(BaseModel):
    groups: list[DuplicateGroupInfo] = Field(description="Largest group first, then by the keeper's path")
    total: int = Field(description="Groups in all")
    offset: int
    limit: int
    next_offset: int | None = Field(description="Offset of the next page, or null when this one is the last")
    threshold: float
    max_distance: int
    images: int = Field(description="Images compared")
    took_ms: float
