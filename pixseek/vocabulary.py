"""The words settings, the CLI, the API and the engine share, defined once as ``StrEnum``\\ s.

A member equals its string (``Precision.BF16 == "bf16"``), so values read from the environment,
a command line or a JSON body compare and serialise as plain text, while Typer and Pydantic list
and check the choices. This module imports nothing of pixseek: every layer may use it.
"""

from __future__ import annotations

from enum import StrEnum


class Precision(StrEnum):
    """Numeric precision of the model towers: ``auto`` picks the fast one for the hardware."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class ImageRuntime(StrEnum):
    """What runs the image tower: ``auto`` is OpenVINO on a CPU when it is installed and the
    precision is fp32 or bf16 (1.7x PyTorch in bf16, 2.5x in fp32, docs/benchmarks.md), else PyTorch."""

    AUTO = "auto"
    TORCH = "torch"
    OPENVINO = "openvino"


class IndexKind(StrEnum):
    """The vector index a collection gets (``auto``: chosen by size and memory budget)."""

    AUTO = "auto"
    FLAT = "flat"
    IVF = "ivf"
    IVFSQ = "ivfsq"
    IVFPQ = "ivfpq"
    HNSW = "hnsw"


class TermKind(StrEnum):
    """What one term of a query is (pixseek.search.query)."""

    TEXT = "text"
    IMAGE = "image"  # an image file
    UPLOAD = "upload"  # an image already decoded: an upload, or a library caller's PIL image
    INDEXED = "indexed"  # an indexed image, by id or path: its stored vector


class SearchMode(StrEnum):
    """What a text query is matched against: image pixels through the embedding (``semantic``),
    the keyword index over OCR text, file names and descriptions (``text``), or both fused
    (``hybrid``, the default once a collection has keyword text)."""

    HYBRID = "hybrid"
    SEMANTIC = "semantic"
    TEXT = "text"


class SortOrder(StrEnum):
    """How the results that pass the cutoff are ordered: best first, by the date taken (oldest
    first, or newest first with ``-taken``), or by path."""

    RELEVANCE = "relevance"
    TAKEN = "taken"
    NEWEST = "-taken"
    PATH = "path"


class Cutoff(StrEnum):
    """Which first-stage results count as matches: every one up to ``k`` (``none``), or those that
    stand out from the query's own score distribution (``auto``; pixseek.search.cutoff)."""

    NONE = "none"
    AUTO = "auto"


class RerankChoice(StrEnum):
    """Which image-text-matching re-rankers order a text search's candidates."""

    NONE = "none"
    BRIDGETOWER = "bridgetower"
    BLIP2 = "blip2"
    BOTH = "both"


class OcrEngine(StrEnum):
    """Which engine reads the words in images (pixseek.ocr): ``auto`` picks the one that measured
    best on the generated text corpus (docs/search.md, "OCR engines")."""

    AUTO = "auto"
    RAPIDOCR = "rapidocr"
    TESSERACT = "tesseract"


# What a blank text query consists of: the API's schema (as a regex class), its check and the
# searcher agree on it (str.strip() alone would also call "\x1c" or "\x85" blank).
QUERY_BLANKS = " \t\n\r\f\v"

# Short names for the public checkpoints users ask for, so ``--model altclip-m9`` just works.
ENCODER_PRESETS: dict[str, str] = {
    "clip": "openai/clip-vit-base-patch32",
    "clip-b16": "openai/clip-vit-base-patch16",
    "clip-l14": "openai/clip-vit-large-patch14",
    "altclip": "BAAI/AltCLIP",
    "altclip-m9": "BAAI/AltCLIP-m9",
}
# The re-rankers' public checkpoints (``--bridgetower-model``, ``--blip2-model`` take these names).
RERANKER_PRESETS: dict[str, str] = {
    "bridgetower": "BridgeTower/bridgetower-base-itm-mlm",
    "blip2": "Salesforce/blip2-itm-vit-g",
    "blip2-coco": "Salesforce/blip2-itm-vit-g-coco",
}
# The re-rankers one can load, in the order results list their scores; RerankChoice.BOTH is both.
RERANKER_KINDS = (RerankChoice.BRIDGETOWER, RerankChoice.BLIP2)


def choices(vocabulary: type[StrEnum]) -> str:
    """'auto, fp32, bf16 or fp16': the values for a message or a help text."""
    values = [member.value for member in vocabulary]
    return f"{', '.join(values[:-1])} or {values[-1]}"
