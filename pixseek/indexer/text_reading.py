"""OCR as a step of indexing: the words of a decoded picture as a keyword text, with boxes in the
pixels of the full-size upright image.

It runs in the decoding threads, on the pixels the embedding step decoded (one decode per file),
so its cost shows in the same progress bar and benchmark as the rest of indexing. A picture the
engine cannot read still gets indexed: the reading says why it holds no words.
"""

from __future__ import annotations

from dataclasses import dataclass

from pixseek.media.decode import DEFAULT_MAX_PIXELS, DecodedImage, decode_image
from pixseek.media.errors import DecodeError
from pixseek.media.files import FileOpener
from pixseek.ocr.reader import OcrReader
from pixseek.ocr.types import OcrWord
from pixseek.store.ocr_queries import OcrReading
from pixseek.store.records import TEXT_OCR, KeywordText, TextWord, ocr_signature
from pixseek.store.repository import Store

# The shorter side JPEGs are draft-decoded to when OCR reads them (the model alone needs 224):
# libjpeg's 1/2 scale keeps a 12 MP photo at 2,000x1,500, above the detector's 960 px input
# (pixseek.ocr.rapid.DETECT_MAX_SIDE) and Tesseract's legible glyph size for signs and labels,
# where 1/4 scale (1,000x750) blurs small print; decoding at full size would cost 2-3x the decode.
OCR_MIN_SIDE = 1280


@dataclass(frozen=True)
class TextRead:
    """One picture's reading, and the engine's note when it could not read it ("" otherwise)."""

    reading: OcrReading
    note: str = ""


@dataclass(frozen=True)
class FileTextRead:
    """The backfill's verdict on one stored image's file: its reading, or why there is none."""

    image_id: int
    path: str
    read: TextRead | None = None
    error: str | None = None


class TextReader:
    """A loaded OCR engine plus the signature its readings record."""

    def __init__(self, reader: OcrReader):
        self.reader = reader
        self.signature = ocr_signature(reader.name, reader.languages)

    def read(self, decoded: DecodedImage) -> TextRead:
        """The words of ``decoded`` as the image's OCR text; never raises for a bad picture."""
        result = self.reader.read(decoded.image)
        width, height = decoded.image.size
        scale_x = decoded.metadata.width / width if width else 1.0
        scale_y = decoded.metadata.height / height if height else 1.0
        words = [_full_size(word, scale_x, scale_y) for word in result.words if word.text.strip()]
        text = KeywordText.from_words(words) if words else None
        return TextRead(OcrReading(self.signature, text), result.note)

    def read_file(
        self, image_id: int, path: str, opener: FileOpener, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> FileTextRead:
        """Read an already indexed image's file again for its words (OCR turned on, or its languages
        changed, after it was embedded)."""
        try:
            data = opener.read(path)
            decoded = decode_image(data, min_side=OCR_MIN_SIDE, max_pixels=max_pixels)
        except FileNotFoundError:
            return FileTextRead(image_id, path, error="file is gone; the next index run removes it")
        except DecodeError as error:
            return FileTextRead(image_id, path, error=error.reason)
        except OSError as error:
            return FileTextRead(image_id, path, error=f"unreadable: {error.strerror or error}")
        return FileTextRead(image_id, path, read=self.read(decoded))

    def close(self) -> None:
        self.reader.close()


def donated_reading(store: Store, donor_id: int, digest: str, signature: str) -> OcrReading | None:
    """The reading of an image with the same content in collection ``donor_id`` (the active
    collection a new one is built beside), if the same engine and languages read it; None when
    there is none to reuse and OCR must run."""
    candidates = store.indexed_by_hash(donor_id, [digest]).get(digest)
    if not candidates:
        return None
    image_id = candidates[0][0]
    row = store.images([image_id]).get(image_id)
    if row is None or row.ocr != signature:
        return None
    texts = store.keyword_texts([image_id], with_paths=False).get(image_id, [])
    return OcrReading(signature, next((text for text in texts if text.source == TEXT_OCR), None))


def _full_size(word: OcrWord, scale_x: float, scale_y: float) -> TextWord:
    """``word``'s box as (left, top, right, bottom) in the full-size image's pixels."""
    left, top, width, height = word.rect()
    return TextWord(
        word.text,
        (
            round(left * scale_x, 1),
            round(top * scale_y, 1),
            round((left + width) * scale_x, 1),
            round((top + height) * scale_y, 1),
        ),
        round(float(word.confidence), 4),
    )
