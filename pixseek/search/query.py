"""What a search asks for: a weighted sum of terms, each a text, an image or an indexed image.

A plain search is a query of one term. A composed one ("a dog" + an image of a pool - "leash")
combines its terms in the embedding space the way rclip and the CLIP papers do: every term is
embedded and normalised, the weighted vectors are summed, and the sum is normalised again::

    q = normalise(sum_i w_i * normalise(e_i))

so a weight is the term's share of the direction, independent of how long its raw embedding was.
A negative weight pushes results away from the term. Weights are non-zero, finite numbers; the
terms of one query must not cancel out (a zero sum has no direction).

An image term may be cut to a region (:class:`Crop`) before it is embedded: the box is searched
for, not the whole picture.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pixseek.errors import PixseekError
from pixseek.vocabulary import QUERY_BLANKS, TermKind

if TYPE_CHECKING:
    from PIL import Image

MAX_TERMS = 16
MAX_WEIGHT = 100.0
_WEIGHT_PREFIX = re.compile(r"^\s*([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*:(.*)$", re.DOTALL)
_LOOKS_LIKE_WEIGHT = re.compile(r"^\s*[-+]?[0-9.eE]*[0-9][0-9.eE]*\s*:")


@dataclass(frozen=True)
class Crop:
    """A box ``x, y, width, height``: in pixels of the (EXIF-oriented) image, or, when
    ``fractions``, in fractions of its width and height."""

    x: float
    y: float
    width: float
    height: float
    fractions: bool = False

    def __post_init__(self) -> None:
        values = (self.x, self.y, self.width, self.height)
        if not all(math.isfinite(v) for v in values):
            raise PixseekError(f"crop {self}: every value must be a finite number")
        if self.x < 0 or self.y < 0 or self.width <= 0 or self.height <= 0:
            raise PixseekError(f"crop {self}: x and y must be >= 0, width and height > 0")
        if self.fractions and (self.x + self.width > 1 + 1e-9 or self.y + self.height > 1 + 1e-9):
            raise PixseekError(f"crop {self} reaches outside the image (fractions add up to more than 1)")

    def __str__(self) -> str:
        def show(v: float) -> str:
            return f"{v:g}" if self.fractions else str(int(v))

        return ",".join(show(v) for v in (self.x, self.y, self.width, self.height))

    @classmethod
    def parse(cls, text: str) -> Crop:
        """``X,Y,W,H``: integers are pixels; with any decimal point, fractions of the image."""
        parts = [part.strip() for part in text.split(",")]
        if len(parts) != 4:
            raise PixseekError(f"crop {text!r}: give X,Y,W,H (pixels, or fractions such as 0.25,0,0.5,1)")
        try:
            values = [float(part) for part in parts]
        except ValueError:
            raise PixseekError(f"crop {text!r}: X,Y,W,H must be numbers") from None
        fractions = any("." in part or "e" in part.lower() for part in parts)
        if not fractions and any(v != int(v) for v in values):
            fractions = True
        x, y, width, height = values
        return cls(x, y, width, height, fractions=fractions)

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The box in pixels of an image ``width`` x ``height`` (left, upper, right, lower);
        PixseekError if it reaches outside the image or holds less than one pixel."""
        if self.fractions:
            left, upper = round(self.x * width), round(self.y * height)
            right, lower = round((self.x + self.width) * width), round((self.y + self.height) * height)
        else:
            left, upper = int(self.x), int(self.y)
            right, lower = int(self.x + self.width), int(self.y + self.height)
            if right > width or lower > height:
                raise PixseekError(f"crop {self} reaches outside the {width}x{height} image")
        if right - left < 1 or lower - upper < 1:
            raise PixseekError(f"crop {self} holds no pixel of the {width}x{height} image")
        return left, upper, min(right, width), min(lower, height)

    def apply(self, image: Image.Image) -> Image.Image:
        return image.crop(self.box(*image.size))


@dataclass(frozen=True)
class QueryTerm:
    """One term: a text, an image file, an image already decoded (an upload), or an indexed image
    (by id or path, whose stored vector is used unless it is cropped)."""

    kind: TermKind
    value: str | Path | int | Image.Image = field(compare=False)
    weight: float = 1.0
    crop: Crop | None = None

    def __post_init__(self) -> None:
        check_weight(self.weight)
        if self.crop is not None and self.kind == TermKind.TEXT:
            raise PixseekError("a crop applies to an image, not to a text")
        if self.kind == TermKind.TEXT and not str(self.value).strip(QUERY_BLANKS):
            raise PixseekError("a text term is empty")

    def __str__(self) -> str:
        sign = "-" if self.weight < 0 else "+"
        weight = "" if abs(self.weight) == 1 else f"{abs(self.weight):g}:"
        shown = "an uploaded image" if self.kind == TermKind.UPLOAD else str(self.value)
        crop = f" [crop {self.crop}]" if self.crop else ""
        return f"{sign}{weight}{shown}{crop}"


def check_weight(weight: float) -> float:
    if not math.isfinite(weight) or weight == 0 or abs(weight) > MAX_WEIGHT:
        raise PixseekError(f"weight {weight:g}: a term's weight is a non-zero number up to {MAX_WEIGHT:g}")
    return weight


def split_weight(spec: str) -> tuple[float, str]:
    """``"0.5:./pool.jpg"`` -> (0.5, "./pool.jpg"); without a number before the first colon the
    whole text is the term, weight 1 (so a text such as "note: red" stays a text). A prefix that
    looks like a number but is none ("1..5:x") is an error, not silently part of a text."""
    match = _WEIGHT_PREFIX.match(spec)
    if match is None:
        if _LOOKS_LIKE_WEIGHT.match(spec):
            raise PixseekError(f"term {spec!r}: the weight before ':' is not a number")
        return 1.0, spec
    try:
        weight = float(match.group(1))
    except ValueError:
        raise PixseekError(f"term {spec!r}: the weight {match.group(1)!r} is not a number") from None
    return check_weight(weight), match.group(2)


@dataclass(frozen=True)
class Query:
    """The terms of one search, in the order given."""

    terms: tuple[QueryTerm, ...]

    def __post_init__(self) -> None:
        if not self.terms:
            raise PixseekError("a query needs at least one term: a text, an image or an indexed image")
        if len(self.terms) > MAX_TERMS:
            raise PixseekError(f"a query has at most {MAX_TERMS} terms, got {len(self.terms)}")
        if not any(term.weight > 0 for term in self.terms):
            raise PixseekError("a query needs a positive term: only negative terms give no direction")

    @property
    def simple(self) -> QueryTerm | None:
        """The one term of a plain search (weight 1, no crop), else None."""
        if len(self.terms) == 1 and self.terms[0].weight == 1 and self.terms[0].crop is None:
            return self.terms[0]
        return None

    @property
    def positive_text(self) -> str | None:
        """What re-ranking scores: the positive texts, joined (None if the query has none). The
        re-rankers read a text and an image together; negative terms and images have no place in
        that pair."""
        positive = [
            str(term.value).strip(QUERY_BLANKS)
            for term in self.terms
            if term.kind == TermKind.TEXT and term.weight > 0
        ]
        return ", ".join(positive) or None

    def describe(self) -> str:
        return " ".join(str(term) for term in self.terms).removeprefix("+")


def combine(vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """``normalise(sum_i w_i * normalise(v_i))`` over the rows of ``vectors``."""
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise PixseekError("a query term embeds to a zero vector: it has no direction")
    total = (np.asarray(weights, dtype=np.float32)[:, None] * (rows / norms)).sum(axis=0)
    length = float(np.linalg.norm(total))
    if length < 1e-6:
        raise PixseekError("the query's terms cancel each other out: change a weight or drop a term")
    return (total / length).astype(np.float32)
