"""The reader the indexer holds: bounds the image, runs the engine, maps boxes back, and turns
anything the engine raises into a result with a note, so no image is lost and no exception escapes
a decoding thread."""

from __future__ import annotations

import time
from dataclasses import replace

from PIL import Image

from pixseek.ocr.bounds import MAX_SIDE, prepare
from pixseek.ocr.engine import TextEngine
from pixseek.ocr.types import OcrResult, OcrWord


class OcrReader:
    """An engine plus the rules around it; as shareable between threads as its engine says."""

    def __init__(self, engine: TextEngine, *, max_side: int = MAX_SIDE):
        self.engine = engine
        self.max_side = max_side

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def languages(self) -> tuple[str, ...]:
        return self.engine.languages

    @property
    def thread_safe(self) -> bool:
        return self.engine.thread_safe

    def read(self, image: Image.Image) -> OcrResult:
        """The words of ``image`` with boxes in its own pixels; never raises for a bad image."""
        width, height = image.size
        base = OcrResult(self.engine.name, width, height, languages=self.languages)
        started = time.perf_counter()
        try:
            prepared = prepare(image, self.max_side)
            if prepared.image is None:
                return replace(base, note=prepared.note, seconds=time.perf_counter() - started)
            words = self.engine.recognise(prepared.image)
        except (MemoryError, Exception) as error:
            return replace(
                base,
                note=f"engine failed: {type(error).__name__}: {error}"[:300],
                seconds=time.perf_counter() - started,
            )
        if prepared.scale != 1.0:
            words = [_scaled(word, prepared.scale, width, height) for word in words]
        return replace(base, words=tuple(words), seconds=time.perf_counter() - started, scale=prepared.scale)

    def close(self) -> None:
        """Release the engine's models where it holds per-thread copies."""
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()


def _scaled(word: OcrWord, scale: float, width: int, height: int) -> OcrWord:
    """``word`` with its box in the original image's pixels (clamped to the image)."""
    box = tuple((min(width, x * scale), min(height, y * scale)) for x, y in word.box)
    return OcrWord(word.text, box, word.confidence, word.line)  # type: ignore[arg-type]
