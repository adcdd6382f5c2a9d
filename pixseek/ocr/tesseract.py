"""Tesseract 5 through ``tesserocr`` (its wheel bundles libtesseract; the language data comes from
Debian's ``tesseract-ocr-<lang>`` packages), called in-process: no subprocess per image, the model
loaded once per thread.

A ``PyTessBaseAPI`` holds per-image state (``SetImage`` then ``Recognize``) and must not be used by
two threads at once, so the engine keeps one API per calling thread (created on that thread's first
call) rather than a lock that would serialise the decoding pool.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, ImageStat

from pixseek.errors import PixseekError
from pixseek.ocr.languages import debian_package, tesseract_names
from pixseek.ocr.types import OcrWord, Quad

EXTRA_HINT = "pip install 'pixseek[ocr]'"

# Where Debian (and Ubuntu) put the language data; TESSDATA_PREFIX overrides.
TESSDATA_DIRS = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
)
# Tesseract's word confidence is 0-100; under this a "word" on a photo is mostly texture read as
# letters (measured on the scikit-image photos: bench/bench_ocr.py).
MIN_WORD_CONFIDENCE = 0.6
# Tesseract's LSTM lines are trained on dark text on light paper; light-on-dark signs and dark-mode
# screenshots lose most words unless inverted first (bench: dark backgrounds 3% -> see docs).
DARK_MEAN = 110
# Glyphs under about 20 px are below Tesseract's comfortable x-height: images whose longer side is
# at most this would be read at twice the size; measured worse on the corpus (38% -> 30% of words,
# twice the time: bench/bench_ocr.py), so it is off (0) by default.
UPSCALE_BELOW = 0


def tessdata_dir(names: list[str]) -> Path:
    """The folder holding every ``<name>.traineddata`` asked for, or a one-line error naming the
    Debian packages to install."""
    candidates = [os.environ["TESSDATA_PREFIX"]] if os.environ.get("TESSDATA_PREFIX") else []
    candidates.extend(TESSDATA_DIRS)
    for folder in candidates:
        path = Path(folder)
        if all((path / f"{name}.traineddata").is_file() for name in names):
            return path
    packages = " ".join(debian_package(name) for name in names)
    raise PixseekError(
        f"Tesseract language data for {'+'.join(names)} not found (looked in {', '.join(candidates)}); "
        f"install it: apt-get install {packages}"
    )


class TesseractEngine:
    """Tesseract for a fixed set of languages, one API object per calling thread."""

    name = "tesseract"
    thread_safe = True  # by keeping one API per thread; the API objects themselves are not

    def __init__(
        self,
        languages: tuple[str, ...],
        *,
        min_confidence: float = MIN_WORD_CONFIDENCE,
        upscale_below: int = UPSCALE_BELOW,
        invert_dark: bool = True,
    ):
        try:
            import tesserocr
        except ImportError as error:
            raise PixseekError(
                f"OCR with tesseract needs the ocr extra: {EXTRA_HINT} ({error.name or error} is missing)"
            ) from error
        self._tesserocr: Any = tesserocr
        self.languages = languages
        self.min_confidence = min_confidence
        self.upscale_below = upscale_below
        self.invert_dark = invert_dark
        self._names = tesseract_names(languages)
        self._path = str(tessdata_dir(self._names))
        self._local = threading.local()
        self._apis: list[Any] = []
        self._lock = threading.Lock()
        self._api()  # load on the constructing thread now: a broken data file fails here, once

    def _api(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:
            try:
                api = self._tesserocr.PyTessBaseAPI(
                    path=self._path + "/", lang="+".join(self._names), psm=self._tesserocr.PSM.AUTO
                )
            except RuntimeError as error:
                raise PixseekError(f"Tesseract could not load {'+'.join(self._names)}: {error}") from error
            self._local.api = api
            with self._lock:
                self._apis.append(api)
        return api

    def recognise(self, image: Image.Image) -> list[OcrWord]:
        """The words of ``image`` (RGB) with Tesseract's word boxes, lines numbered in reading order."""
        gray, factor = self._grayscale(image)
        api = self._api()
        api.SetImage(gray)
        try:
            api.Recognize()
            return self._words(api.GetIterator(), factor)
        finally:
            api.Clear()

    def _grayscale(self, image: Image.Image) -> tuple[Image.Image, float]:
        """Gray, dark text on light ground, small images doubled: what Tesseract reads best."""
        gray = image.convert("L")
        if self.invert_dark and ImageStat.Stat(gray).mean[0] < DARK_MEAN:
            gray = ImageOps.invert(gray)
        if max(gray.size) <= self.upscale_below:
            return gray.resize((gray.width * 2, gray.height * 2), Image.Resampling.LANCZOS), 2.0
        return gray, 1.0

    def _words(self, iterator: Any, factor: float) -> list[OcrWord]:
        tesserocr = self._tesserocr
        words: list[OcrWord] = []
        if iterator is None:
            return words
        level = tesserocr.RIL.WORD
        line = -1
        while True:
            if iterator.IsAtBeginningOf(tesserocr.RIL.TEXTLINE):
                line += 1
            try:
                text = iterator.GetUTF8Text(level)
            except RuntimeError:  # "No text returned": an empty page or an empty word slot
                text = ""
            box = iterator.BoundingBox(level) if text else None
            confidence = iterator.Confidence(level) / 100.0 if text else 0.0
            if text and text.strip() and box is not None and confidence >= self.min_confidence:
                x1, y1, x2, y2 = (float(v) / factor for v in box)
                quad: Quad = ((x1, y1), (x2, y1), (x2, y2), (x1, y2))
                words.append(OcrWord(text.strip(), quad, confidence, max(line, 0)))
            if not iterator.Next(level):
                break
        return words

    def close(self) -> None:
        """Free every thread's Tesseract model (each holds tens of MB per language)."""
        with self._lock:
            apis, self._apis = self._apis, []
        for api in apis:
            api.End()
