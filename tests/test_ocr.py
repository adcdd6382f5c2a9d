"""OCR engines on rendered text with known words, text-less photos, and input that must lose
nothing (too small, too elongated, odd modes, an engine that raises); the one-line errors for a
missing extra or missing language data. Offline: RapidOCR's models ship in its wheel, Tesseract's
language data in Debian packages (scripts/test.sh installs them)."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import skimage
from PIL import Image, ImageDraw, ImageFont

from pixseek.errors import PixseekError
from pixseek.ocr import OcrReader, load_ocr, parse_languages, resolve_engine
from pixseek.ocr import tesseract as tesseract_module
from pixseek.ocr.bounds import MAX_SIDE, prepare
from pixseek.ocr.types import OcrWord
from pixseek.ocr.words import split_line, tokens
from pixseek.testing.text_images import (
    TextImage,
    available_fonts,
    controlled,
    generate,
    render,
    truth_words,
    write_corpus,
)
from pixseek.vocabulary import OcrEngine

ENGINES = ("rapidocr", "tesseract")


def _installed(engine: str) -> bool:
    module = "rapidocr_onnxruntime" if engine == "rapidocr" else "tesserocr"
    return importlib.util.find_spec(module) is not None


def _require(engine: str) -> None:
    """Skip where the ocr extra is not installed, except in CI, where that is a failure."""
    if not _installed(engine) and not os.environ.get("CI"):
        pytest.skip(f"{engine} is not installed (pip install 'pixseek[ocr]')")


@pytest.fixture(scope="module")
def readers() -> Iterator[dict[str, OcrReader | str]]:
    """Each engine loaded once, or the reason it could not be (missing Debian data outside CI)."""
    loaded: dict[str, OcrReader | str] = {}
    for engine in ENGINES:
        if not _installed(engine) and not os.environ.get("CI"):
            continue
        try:
            loaded[engine] = load_ocr(engine, "en,de")
        except PixseekError as error:
            if os.environ.get("CI"):
                raise
            loaded[engine] = str(error)
    yield loaded
    for reader in loaded.values():
        if isinstance(reader, OcrReader):
            reader.close()


def _reader(readers: dict[str, OcrReader | str], engine: str) -> OcrReader:
    _require(engine)
    reader = readers[engine]
    if isinstance(reader, str):
        pytest.skip(reader)
    return reader


def _sample(
    lines: list[str], *, language: str = "en", kind: str = "sign", size: int = 32, **conditions
) -> tuple[TextImage, Image.Image]:
    """A rendered image with known lines, in the first installed DejaVu/Liberation font."""
    fonts = available_fonts()
    sample = TextImage(
        name="t.png",
        words=truth_words(lines, language),
        language=language,
        kind=kind,
        font=fonts[0].stem if fonts else "pillow-default",
        size=size,
        rotation=conditions.get("rotation", 0.0),
        blur=conditions.get("blur", 0.0),
        jpeg=conditions.get("jpeg", 0),
        background=conditions.get("background", "light"),
        lines=lines,
    )
    return sample, render(sample, fonts[0] if fonts else None, random.Random(3))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("lines", "conditions"),
    [
        (["Coffee Station", "Platform 12"], {}),
        (["Receipt 4821", "cheese 12.50", "orange 3.20"], {"kind": "receipt", "size": 24}),
        (["Settings account delivery"], {"kind": "screenshot", "background": "dark", "size": 24}),
        (["Museum ticket", "harbour 7731"], {"kind": "label", "jpeg": 60, "rotation": 5.0}),
        # blurred: RapidOCR's recogniser drops these spaces, the pixels put them back (respace)
        (["cheese 12.50", "orange 3.20"], {"kind": "receipt", "blur": 2.0}),
    ],
)
def test_engines_read_known_words(readers, engine, lines, conditions) -> None:
    reader = _reader(readers, engine)
    sample, image = _sample(lines, **conditions)
    result = reader.read(image)
    assert result.ok, result.note
    read = set(tokens(result.text))
    expected = set(tokens(" ".join(sample.words)))
    missing = expected - read
    assert len(missing) <= 1, f"{engine} read {result.text!r}, missed {missing}"
    for word in result.words:
        x, y, w, h = word.rect()
        assert 0 <= x <= image.width and 0 <= y <= image.height and w > 0 and h > 0
        assert 0.0 <= word.confidence <= 1.0


def test_tesseract_reads_german_accents(readers) -> None:
    reader = _reader(readers, "tesseract")
    _, image = _sample(["Bäckerei Straße", "Öffnungszeiten"], language="de")
    assert set(tokens("Bäckerei Straße Öffnungszeiten")) <= set(tokens(reader.read(image).text))


@pytest.mark.parametrize("engine", ENGINES)
def test_photo_without_text_gives_no_words_fast(readers, engine) -> None:
    reader = _reader(readers, engine)
    photo = Image.fromarray(skimage.data.chelsea())
    reader.read(photo)  # warm-up: first-call allocations
    started = time.perf_counter()
    result = reader.read(photo)
    elapsed = time.perf_counter() - started
    assert result.ok and result.words == ()
    assert elapsed < 2.0, f"{engine} took {elapsed:.2f}s on a photo without text"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("size", "mode"),
    [((1, 1), "RGB"), ((0, 0), "RGB"), ((20000, 10), "RGB"), ((10, 20000), "L"), ((64, 64), "RGBA"),
     ((200, 80), "I;16"), ((200, 80), "P"), ((120, 90), "CMYK"), ((300, 300), "1")],
)  # fmt: skip
def test_bad_input_loses_nothing(readers, engine, size, mode) -> None:
    reader = _reader(readers, engine)
    result = reader.read(Image.new(mode, size))
    assert result.width == size[0] and result.height == size[1]
    assert result.words == ()
    if min(size) < 6:
        assert "too small" in result.note
    elif max(size) > MAX_SIDE and min(size) * MAX_SIDE / max(size) < 6:
        assert "too elongated" in result.note
    else:
        assert result.ok, result.note


@pytest.mark.parametrize("engine", ENGINES)
def test_huge_text_and_huge_image(readers, engine) -> None:
    """One glyph row taller than the detector's input, and an image over the side bound: both read
    or answered, the boxes in the original image's pixels."""
    reader = _reader(readers, engine)
    fonts = available_fonts()
    image = Image.new("RGB", (1800, 1400), "white")
    font = ImageFont.truetype(str(fonts[0]), 900) if fonts else ImageFont.load_default(900)
    ImageDraw.Draw(image).text((50, 50), "EXIT", fill="black", font=font)
    result = reader.read(image)
    assert result.ok, result.note
    big = Image.new("RGB", (MAX_SIDE * 2, 1200), "white")
    font = ImageFont.truetype(str(fonts[0]), 160) if fonts else ImageFont.load_default(160)
    ImageDraw.Draw(big).text((2600, 500), "Harbour", fill="black", font=font)
    result = reader.read(big)
    assert result.ok and result.scale == 2.0
    words = [word for word in result.words if tokens(word.text) == ["harbour"]]
    assert words, result.text
    x, y, w, _h = words[0].rect()
    assert 2400 < x < 2800 and 400 < y < 700 and w > 300


def test_engine_failure_is_a_note_not_an_exception() -> None:
    class Broken:
        name = "broken"
        languages = ("en",)
        thread_safe = True

        def recognise(self, image: Image.Image) -> list[OcrWord]:
            raise RuntimeError("the model rejected this input")

    result = OcrReader(Broken()).read(Image.new("RGB", (100, 100)))
    assert result.words == () and result.note == "engine failed: RuntimeError: the model rejected this input"


@pytest.mark.parametrize("engine", ENGINES)
def test_one_engine_is_shared_by_threads(readers, engine) -> None:
    """One reader, several decoding threads (RapidOCR: one onnxruntime pipeline; Tesseract: an API
    per thread): the same words as one thread reading them in turn."""
    reader = _reader(readers, engine)
    images = [
        _sample([line])[1] for line in ("Coffee Station", "Bakery Market", "Orange River", "Exit North")
    ]
    serial = [reader.read(image).text for image in images]
    parallel: list[str] = [""] * len(images)

    def work(index: int) -> None:
        parallel[index] = reader.read(images[index]).text

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert parallel == serial


def test_missing_extra_names_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    monkeypatch.setitem(sys.modules, "tesserocr", None)
    for engine in ENGINES:
        with pytest.raises(PixseekError) as error:
            load_ocr(engine)
        message = str(error.value)
        assert "pip install 'pixseek[ocr]'" in message and "\n" not in message


def test_missing_language_data_names_the_debian_package(monkeypatch, tmp_path) -> None:
    _require("tesseract")
    monkeypatch.delenv("TESSDATA_PREFIX", raising=False)
    monkeypatch.setattr(tesseract_module, "TESSDATA_DIRS", (str(tmp_path),))
    with pytest.raises(PixseekError) as error:
        load_ocr("tesseract", "en,zh")
    message = str(error.value)
    assert "apt-get install tesseract-ocr-eng tesseract-ocr-chi-sim" in message and "\n" not in message


def test_languages_and_auto() -> None:
    assert parse_languages("EN, de,en") == ("en", "de")
    assert parse_languages(None) == ("en",)
    with pytest.raises(PixseekError, match="unknown OCR language 'klingon'"):
        parse_languages("en,klingon")
    with pytest.raises(PixseekError, match="unknown OCR engine"):
        load_ocr("paddle")
    assert resolve_engine("tesseract", ("en",)) is OcrEngine.TESSERACT
    assert resolve_engine(OcrEngine.AUTO, ("en", "de", "zh")) is OcrEngine.RAPIDOCR  # measured default
    assert resolve_engine(OcrEngine.AUTO, ("en", "ru")) is OcrEngine.TESSERACT  # no Cyrillic in PP-OCR's "ch"


def test_bounds_and_word_boxes() -> None:
    prepared = prepare(Image.new("RGBA", (MAX_SIDE * 3, 300), (0, 0, 0, 0)))
    assert prepared.image is not None and prepared.image.mode == "RGB"
    assert prepared.image.size == (MAX_SIDE, 100) and prepared.scale == 3.0
    assert prepared.image.getpixel((5, 5)) == (255, 255, 255)  # transparency onto white
    words = split_line("Total 12.50", ((0, 0), (110, 0), (110, 10), (0, 10)), 0.9, 2)
    assert [w.text for w in words] == ["Total", "12.50"]
    assert words[0].rect() == (0, 0, 50, 10) and words[1].rect() == (60, 0, 50, 10)


def test_corpus_is_reproducible(tmp_path) -> None:
    first = [(s.words, s.condition(), image.size) for s, image in generate(6, seed=4)]
    second = [(s.words, s.condition(), image.size) for s, image in generate(6, seed=4)]
    assert first == second and all(words for words, _, _ in first)
    samples = write_corpus(tmp_path, 3, seed=4, photos=False)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert sorted(truth) == sorted(sample.name for sample in samples)
    assert all((tmp_path / name).is_file() and entry["words"] for name, entry in truth.items())
    conditions = {condition for condition, _value, _sample, _image in controlled(1)}
    assert conditions == {"kind", "font", "size", "rotation", "blur", "jpeg", "background", "language"}
