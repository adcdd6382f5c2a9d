"""The plain data that crosses the store's boundary: what callers hand to :class:`Store` and get back.

Kept apart from the queries so that the indexer, search and the service can name these types (and
build a batch or a filter) without importing the SQL behind them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np


@dataclass(frozen=True)
class CollectionInfo:
    id: int
    name: str
    model_id: str
    model_fingerprint: str
    dim: int
    precision: str
    generation: int
    # OCR at index time: the concrete engine and the languages it reads (none: no OCR).
    ocr_engine: str | None = None
    ocr_languages: tuple[str, ...] = ()
    state: str = "ready"  # 'building' while its first full indexing run has not finished
    active: bool = False  # the collection used when none is named

    @property
    def ocr(self) -> OcrSetting | None:
        """The collection's OCR, as status reports show it (None: no OCR)."""
        return OcrSetting(self.ocr_engine, self.ocr_languages) if self.ocr_engine else None

    @property
    def ocr_signature(self) -> str | None:
        """What an image read by this collection's OCR records (``images.ocr``); None: no OCR."""
        return ocr_signature(self.ocr_engine, self.ocr_languages) if self.ocr_engine else None


@dataclass(frozen=True)
class OcrSetting:
    """The OCR a collection's indexing runs apply: engine and languages (``index --ocr``)."""

    engine: str
    languages: tuple[str, ...]


def ocr_signature(engine: str, languages: Sequence[str]) -> str:
    """``engine:lang+lang``: an image read with another engine or other languages is read again."""
    return f"{engine}:{'+'.join(languages)}"


@dataclass(frozen=True)
class KnownFile:
    id: int
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str
    ocr: str | None = None  # the OCR signature that read it (images.ocr)


# Where a keyword text of an image comes from (image_texts.source).
TEXT_OCR = "ocr"
TEXT_FILENAME = "filename"
TEXT_PATH = "path"
TEXT_DESCRIPTION = "description"
TEXT_TITLE = "title"
TEXT_KEYWORDS = "keywords"
TEXT_SOURCES = (TEXT_OCR, TEXT_FILENAME, TEXT_PATH, TEXT_DESCRIPTION, TEXT_TITLE, TEXT_KEYWORDS)
# Derived from the path: rewritten by the store on every insert and move, never carried by a copy.
PATH_SOURCES = (TEXT_FILENAME, TEXT_PATH)


@dataclass(frozen=True)
class TextWord:
    """One word an OCR engine read: its text, its box (left, top, right, bottom) in pixels of the
    upright decoded image, and the engine's confidence in 0..1."""

    text: str
    box: tuple[float, float, float, float]
    confidence: float


@dataclass(frozen=True)
class KeywordText:
    """One searchable text of an image (its OCR text, EXIF description, title or keywords).
    ``words`` are the OCR words with their boxes; metadata texts have none."""

    source: str
    text: str
    words: tuple[TextWord, ...] = ()
    confidence: float | None = None

    @classmethod
    def from_words(cls, words: Sequence[TextWord]) -> KeywordText:
        """The OCR text of an image: its words in reading order, the mean confidence."""
        mean = sum(word.confidence for word in words) / len(words) if words else None
        return cls(TEXT_OCR, " ".join(word.text for word in words), tuple(words), mean)


@dataclass(frozen=True)
class KeywordMatch:
    """Why an image matched a keyword query: a word of one of its texts (with its box and
    confidence when OCR read it), or a query word found in its file name, path or metadata."""

    source: str
    text: str
    box: tuple[float, float, float, float] | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class KeywordHit:
    image_id: int
    score: float  # in (0, 1), higher is better; comparable within one backend's results only
    matches: tuple[KeywordMatch, ...] = ()


@dataclass(frozen=True)
class FileFacts:
    """What the indexer learned about one file on disk, whatever the outcome."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    taken_at: datetime | None = None
    camera: str | None = None
    orientation: int | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    perceptual_hash: int | None = None  # pHash of the decoded, upright pixels (pixseek.media.perceptual)
    # Its searchable texts besides the path words, which the store derives itself: EXIF/XMP
    # description, title and keywords, and OCR text when an OCR step ran before the batch.
    texts: tuple[KeywordText, ...] = ()
    ocr: str | None = None  # the OCR signature that read it, when the texts hold its OCR text

    def with_metadata_of(self, source: object) -> FileFacts:
        """These facts with the image metadata of ``source``: a decoded image's metadata, or the
        stored row of an original whose copy this is (same content, same pixels and EXIF). A stored
        row also hands over its perceptual hash; a decoded image's metadata has none (the indexer
        hashes the pixels), and these facts keep theirs."""
        values = {name: getattr(source, name) for name in IMAGE_METADATA}
        values["perceptual_hash"] = getattr(source, "perceptual_hash", self.perceptual_hash)
        values["ocr"] = getattr(source, "ocr", self.ocr)  # a copy is read when its original was
        return replace(self, **values)


# The fields of FileFacts (and of a stored image row) that describe the picture, not the file.
IMAGE_METADATA = ("format", "width", "height", "taken_at", "camera", "orientation", "gps_lat", "gps_lon")


@dataclass
class ChangeBatch:
    """One transaction's worth of index changes, applied in a safe order: deletes, moves, inserts."""

    indexed: list[tuple[FileFacts, np.ndarray]] = field(default_factory=list)
    failed: list[tuple[FileFacts, str]] = field(default_factory=list)
    moved: list[tuple[int, FileFacts]] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.indexed or self.failed or self.moved or self.deleted)


@dataclass(frozen=True)
class AppliedChanges:
    added_ids: np.ndarray
    added_vectors: np.ndarray
    removed_ids: np.ndarray
    generation: int


@dataclass(frozen=True)
class SearchFilters:
    folders: tuple[str, ...] = ()
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    min_width: int | None = None
    min_height: int | None = None
    formats: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(
            self.folders
            or self.taken_after
            or self.taken_before
            or self.min_width
            or self.min_height
            or self.formats
        )


@dataclass(frozen=True)
class CollectionStats:
    indexed: int
    failed: int
    first_indexed: datetime | None
    last_indexed: datetime | None


@dataclass(frozen=True)
class SavedIndexSummary:
    """What a saved vector index's manifest tells without loading it (``pixseek status``)."""

    type: str  # flat, ivf, ivfsq, ivfpq or hnsw
    factory: str  # the FAISS factory string of the base
    params: dict[str, int]  # tuned search parameters
    measured_recall: float | None  # recall@10 they were measured at (1.0: exact)
    bytes: int  # on disk


@dataclass(frozen=True)
class IndexDescription:
    """A loaded vector index, as ``/status`` and ``reindex`` report it (docs/scaling.md)."""

    type: str
    factory: str
    vectors: int
    base_vectors: int
    delta_vectors: int  # added since the base was built, searched exactly
    tombstones: int  # base vectors removed since, masked
    params: dict[str, int]  # in use: tuned, or overridden by PIXSEEK_NPROBE...
    measured_recall: float | None
    recall_target: float
    bytes_per_vector: int
    gpus: int
    maintenance_running: bool  # a new base is being built in the background
    last_maintenance_error: str | None
