"""``load_ocr``: an engine name and languages in, a ready :class:`OcrReader` out, or one line
saying what to install.

``auto`` resolves to the engine that measured best on the generated corpus (bench/bench_ocr.py;
figures in docs/search.md, "OCR engines").
"""

from __future__ import annotations

from pixseek.errors import PixseekError
from pixseek.ocr.languages import RAPIDOCR_LANGUAGES, parse_languages
from pixseek.ocr.reader import OcrReader
from pixseek.vocabulary import OcrEngine


def resolve_engine(engine: OcrEngine | str, languages: tuple[str, ...]) -> OcrEngine:
    """The concrete engine ``auto`` stands for with these languages."""
    choice = OcrEngine(engine)
    if choice is not OcrEngine.AUTO:
        return choice
    # Measured default (docs/search.md, "OCR engines"): RapidOCR found 81% of the words of the
    # mixed-condition corpus (accents folded) against Tesseract's 37%, and reads text rotated 15
    # degrees and Chinese; Tesseract only for scripts RapidOCR's dictionary lacks.
    if all(code in RAPIDOCR_LANGUAGES for code in languages):
        return OcrEngine.RAPIDOCR
    return OcrEngine.TESSERACT


def load_ocr(
    engine: OcrEngine | str = OcrEngine.AUTO,
    languages: str | tuple[str, ...] | list[str] | None = None,
    *,
    threads: int | None = None,
) -> OcrReader:
    """Load an OCR engine for ``languages`` (ISO 639-1 codes, default English).

    Raises a one-line :class:`PixseekError` when the ``ocr`` extra or a language's Debian data is
    missing, or the engine is unknown; loading takes well under a second for either engine."""
    codes = parse_languages(languages)
    try:
        choice = resolve_engine(engine, codes)
    except ValueError:
        known = ", ".join(member.value for member in OcrEngine)
        raise PixseekError(f"unknown OCR engine {engine!r}; choose one of {known}") from None
    if choice is OcrEngine.RAPIDOCR:
        from pixseek.ocr.rapid import RapidOcrEngine

        return OcrReader(RapidOcrEngine(codes, threads=threads))
    from pixseek.ocr.tesseract import TesseractEngine

    return OcrReader(TesseractEngine(codes))
