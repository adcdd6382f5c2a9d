"""What an OCR engine gives back: words with a box in the pixels of the image it was given.

Plain frozen data, so a result can cross threads, be stored as JSON or compared in a test without
the engine that made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A box as its four corners (top-left, top-right, bottom-right, bottom-left), in pixels of the
# image passed to ``read``: rotated text keeps a tight quadrilateral instead of a loose rectangle.
Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]


@dataclass(frozen=True)
class OcrWord:
    """One recognised word: its text, where it is and how sure the engine is (0 to 1).

    ``line`` numbers the text lines of one image from 0 in reading order, so callers can rebuild
    the lines (for phrase matching) without a second structure."""

    text: str
    box: Quad
    confidence: float
    line: int = 0

    def rect(self) -> tuple[int, int, int, int]:
        """The axis-aligned x, y, width, height around ``box`` (what a web page highlights)."""
        xs = [p[0] for p in self.box]
        ys = [p[1] for p in self.box]
        x, y = round(min(xs)), round(min(ys))
        return x, y, max(1, round(max(xs) - x)), max(1, round(max(ys) - y))


@dataclass(frozen=True)
class OcrResult:
    """The words of one image, plus why there are none when there are none.

    ``note`` is empty when the engine ran; otherwise it says in a few words why no words could be
    read ("image too small to hold text: 1x1 px", "engine failed: ..."), so an indexer can store a
    clear outcome instead of losing the image or an exception escaping a decoding thread."""

    engine: str
    width: int
    height: int
    words: tuple[OcrWord, ...] = ()
    seconds: float = 0.0
    scale: float = 1.0  # the factor the image was downscaled by before OCR (boxes are mapped back)
    note: str = ""
    languages: tuple[str, ...] = field(default=())

    @property
    def text(self) -> str:
        """The words joined, one line of the image per line of text."""
        lines: dict[int, list[str]] = {}
        for word in self.words:
            lines.setdefault(word.line, []).append(word.text)
        return "\n".join(" ".join(lines[number]) for number in sorted(lines))

    @property
    def ok(self) -> bool:
        """Whether the engine ran on the image (it may still have found no words)."""
        return not self.note
