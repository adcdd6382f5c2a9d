"""Lines to words: engines that return whole lines (RapidOCR) get word boxes by interpolating
along the line's quadrilateral, and every engine's text is compared the same way.

Interpolation by character count is exact for monospaced text and within a few pixels for
proportional fonts: enough to highlight a matched word, not meant for glyph-level work.
"""

from __future__ import annotations

import re
import unicodedata

from pixseek.ocr.types import OcrWord, Point, Quad

_WORD = re.compile(r"\S+")
# What separates words for matching: anything that is not a letter, digit or mark. "12.50" stays
# one token, "Total:" becomes "total".
_EDGE_PUNCTUATION = re.compile(r"^[^\w]+|[^\w]+$")


def split_line(text: str, box: Quad, confidence: float, line: int) -> list[OcrWord]:
    """The words of one recognised line, each with its share of the line's box."""
    length = len(text)
    words: list[OcrWord] = []
    if length == 0:
        return words
    (tlx, tly), (trx, try_), (brx, bry), (blx, bly) = box

    def along(top: bool, fraction: float) -> Point:
        if top:
            return (tlx + (trx - tlx) * fraction, tly + (try_ - tly) * fraction)
        return (blx + (brx - blx) * fraction, bly + (bry - bly) * fraction)

    for match in _WORD.finditer(text):
        start, end = match.start() / length, match.end() / length
        quad: Quad = (along(True, start), along(True, end), along(False, end), along(False, start))
        words.append(OcrWord(match.group(), quad, confidence, line))
    return words


def normalise(token: str) -> str:
    """The form two words are compared in: NFKC, case-folded, edge punctuation dropped."""
    return _EDGE_PUNCTUATION.sub("", unicodedata.normalize("NFKC", token).casefold())


def tokens(text: str) -> list[str]:
    """The normalised, non-empty words of a text."""
    return [word for word in (normalise(part) for part in text.split()) if word]
