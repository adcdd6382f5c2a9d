"""Language codes: users write ISO 639-1 (``en,de``), Tesseract names its data files ISO 639-2
(``eng.traineddata``), and RapidOCR's bundled PP-OCRv4 model reads one fixed script mix.

Kept apart from the engines so the CLI can check ``--ocr-lang`` without importing any of them.
"""

from __future__ import annotations

from pixseek.errors import PixseekError

# ISO 639-1 -> Tesseract's data name (Debian package: tesseract-ocr-<name with - for _>).
TESSERACT_CODES: dict[str, str] = {
    "en": "eng",
    "de": "deu",
    "fr": "fra",
    "es": "spa",
    "it": "ita",
    "nl": "nld",
    "pt": "por",
    "pl": "pol",
    "sv": "swe",
    "da": "dan",
    "fi": "fin",
    "no": "nor",
    "cs": "ces",
    "ru": "rus",
    "uk": "ukr",
    "tr": "tur",
    "el": "ell",
    "ja": "jpn",
    "ko": "kor",
    "zh": "chi_sim",
    "zh-hans": "chi_sim",
    "zh-hant": "chi_tra",
}

# What the PP-OCRv4 "ch" recogniser bundled in rapidocr-onnxruntime reads: simplified Chinese and
# the ASCII letters and digits. Latin-script languages are read without their accents ("café" comes
# back "cafe", "Straße" "StraBe"): a keyword index that folds diacritics still matches most of them
# (bench/bench_ocr.py, "folded"). Cyrillic, Greek, kana and Hangul are not in its dictionary.
LATIN_SCRIPT = frozenset({"en", "de", "fr", "es", "it", "nl", "pt", "pl", "sv", "da", "fi", "no", "cs", "tr"})
RAPIDOCR_LANGUAGES = LATIN_SCRIPT | {"zh", "zh-hans"}

DEFAULT_LANGUAGES: tuple[str, ...] = ("en",)


def parse_languages(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """``"en,de"`` or ``["en", "de"]`` -> ``("en", "de")``: lower-cased, de-duplicated, checked.

    An unknown code is refused with the known ones listed, before any engine loads."""
    if value is None:
        return DEFAULT_LANGUAGES
    items = value.split(",") if isinstance(value, str) else list(value)
    codes: list[str] = []
    for item in items:
        code = item.strip().lower().replace("_", "-")
        if not code:
            continue
        if code not in TESSERACT_CODES:
            known = ", ".join(sorted(TESSERACT_CODES))
            raise PixseekError(f"unknown OCR language {item.strip()!r}; known: {known}")
        if code not in codes:
            codes.append(code)
    return tuple(codes) or DEFAULT_LANGUAGES


def tesseract_names(languages: tuple[str, ...]) -> list[str]:
    """Tesseract's data names for ``languages``, in order (``("en", "de")`` -> ``["eng", "deu"]``)."""
    names: list[str] = []
    for code in languages:
        name = TESSERACT_CODES[code]
        if name not in names:
            names.append(name)
    return names


def debian_package(tesseract_name: str) -> str:
    """The Debian package holding a Tesseract language (``chi_sim`` -> ``tesseract-ocr-chi-sim``)."""
    return "tesseract-ocr-" + tesseract_name.replace("_", "-").lower()
