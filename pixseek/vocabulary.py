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


class IndexKind(StrEnum):
    """The vector index a collection gets (``auto``: chosen by size and memory budget)."""

    AUTO = "auto"
    FLAT = "flat"
    IVF = "ivf"
    IVFSQ = "ivfsq"
    IVFPQ = "ivfpq"
    HNSW = "hnsw"


class RerankChoice(StrEnum):
    """Which image-text-matching re-rankers order a text search's candidates."""

    NONE = "none"
    BRIDGETOWER = "bridgetower"
    BLIP2 = "blip2"
    BOTH = "both"


def choices(vocabulary: type[StrEnum]) -> str:
    """'auto, fp32, bf16 or fp16': the values for a message or a help text."""
    values = [member.value for member in vocabulary]
    return f"{', '.join(values[:-1])} or {values[-1]}"
