"""The one interface every OCR engine implements, so the indexer and the benchmark never branch
on which engine they hold."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from PIL import Image

from pixseek.ocr.types import OcrWord


@runtime_checkable
class TextEngine(Protocol):
    """An OCR engine loaded for some languages.

    ``recognise`` takes an RGB image already bounded by :mod:`pixseek.ocr.bounds` and returns its
    words with boxes in that image's pixels, in reading order; it may raise on input it cannot
    handle (the reader turns that into a result with a note). ``thread_safe`` says whether one
    instance may be called from several decoding threads at once: onnxruntime sessions may be
    (RapidOCR), a Tesseract API object may not (the Tesseract engine keeps one per thread
    instead, so it is shareable too, at one model copy per thread)."""

    name: str
    languages: tuple[str, ...]
    thread_safe: bool

    def recognise(self, image: Image.Image) -> list[OcrWord]: ...
