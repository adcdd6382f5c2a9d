"""One file's preparation for indexing: read, hash, and decode and preprocess unless its content is
already indexed.

It stands alone because two callers must apply exactly the same rules: the local decode pool of
:class:`pixseek.indexer.pipeline.Indexer` and the remote Ray actors of
:mod:`pixseek.distributed.ray_indexing`, each with its own store connection and model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from pixseek.embedding import Encoder
from pixseek.indexer.text_reading import OCR_MIN_SIDE, TextReader, donated_reading
from pixseek.indexer.walker import FileEntry
from pixseek.media.decode import DEFAULT_MAX_PIXELS, DecodedImage, decode_image
from pixseek.media.errors import DecodeError
from pixseek.media.exif import DescriptiveText
from pixseek.media.files import FileOpener
from pixseek.media.hashing import content_hash
from pixseek.media.perceptual import perceptual_hash
from pixseek.store.ocr_queries import OcrReading
from pixseek.store.records import TEXT_DESCRIPTION, TEXT_KEYWORDS, TEXT_TITLE, FileFacts, KeywordText
from pixseek.store.repository import Store

log = logging.getLogger(__name__)
DEFAULT_OPENER = FileOpener()  # anywhere, following symlinks, files up to DEFAULT_MAX_FILE_BYTES


@dataclass(frozen=True)
class PreparedFile:
    """A worker's verdict on one file: ready pixels, a stored vector to reuse, or a failure.

    ``vector`` is set instead of ``pixels`` when the worker also ran the model (a Ray actor,
    :mod:`pixseek.distributed.ray_indexing`): the main side then only stores it.
    """

    entry: FileEntry
    facts: FileFacts
    pixels: np.ndarray | None = None
    reuse_candidates: tuple[tuple[int, str], ...] = ()
    error: str | None = None
    vanished: bool = False
    vector: np.ndarray | None = None
    ocr_note: str = ""  # why OCR could not read the picture, when it was asked to and could not
    text_reused: bool = False  # its OCR words came from the same picture in the donor collection


def _facts(entry: FileEntry, digest: str | None, decoded: DecodedImage | None = None) -> FileFacts:
    facts = FileFacts(path=str(entry.path), size=entry.size, mtime_ns=entry.mtime_ns, content_hash=digest)
    if decoded is None:
        return facts
    # The perceptual hash of the pixels already decoded (draft-scaled): 0.4 ms a photo, where
    # reading and decoding it again for `pixseek duplicates` would cost a decode.
    return replace(
        facts.with_metadata_of(decoded.metadata),
        perceptual_hash=perceptual_hash(decoded.image),
        texts=metadata_texts(decoded.metadata.text),
    )


def metadata_texts(text: DescriptiveText) -> tuple[KeywordText, ...]:
    """The EXIF/XMP caption, title and keywords as texts for the keyword index."""
    fields = ((TEXT_DESCRIPTION, text.description), (TEXT_TITLE, text.title), (TEXT_KEYWORDS, text.keywords))
    return tuple(KeywordText(source, value) for source, value in fields if value)


def prepare_file(
    entry: FileEntry,
    store: Store,
    collection_id: int,
    encoder: Encoder,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    opener: FileOpener = DEFAULT_OPENER,
    text_reader: TextReader | None = None,
    text_donor: int | None = None,
) -> PreparedFile:
    """Read, hash and (unless an indexed image has the same content) decode and preprocess one file.

    A module-level function, not a method, so that a remote worker holding its own store connection
    and model (a Ray actor) applies exactly the rules of the local decode pool. The file is read
    through ``opener``: one open, checked on its descriptor, so a file replaced since the walk by a
    FIFO, a device, an oversized file or (when confined) a symlink fails alone, with its reason.
    With ``text_reader``, OCR reads the decoded pixels too (decoded larger for it: OCR_MIN_SIDE),
    unless the same picture in collection ``text_donor`` was read the same way: its words are reused.
    """
    try:
        data = opener.read(entry.path)
    except FileNotFoundError:
        return PreparedFile(entry, _facts(entry, None), vanished=True)
    except DecodeError as error:  # not a regular file, too large, not an image, a symlink refused
        return PreparedFile(entry, _facts(entry, None), error=error.reason)
    except OSError as error:
        return PreparedFile(entry, _facts(entry, None), error=f"unreadable: {error.strerror or error}")
    digest = content_hash(data)
    candidates = store.indexed_by_hash(collection_id, [digest]).get(digest)
    if candidates:
        return PreparedFile(entry, _facts(entry, digest), reuse_candidates=tuple(candidates))
    donated = None
    if text_reader is not None and text_donor is not None:
        donated = donated_reading(store, text_donor, digest, text_reader.signature)
    reads_text = text_reader is not None and donated is None
    min_side = max(encoder.image_min_side, OCR_MIN_SIDE) if reads_text else encoder.image_min_side
    try:
        decoded = decode_image(data, min_side=min_side, max_pixels=max_pixels)
        pixels = encoder.preprocess_image(decoded.image)
    except DecodeError as error:
        return PreparedFile(entry, _facts(entry, digest), error=error.reason)
    except Exception as error:  # a processor bug on one odd image must not stop the run
        log.exception("preprocessing %s failed", entry.path)
        return PreparedFile(entry, _facts(entry, digest), error=f"preprocessing failed: {error}")
    facts = _facts(entry, digest, decoded)
    if text_reader is None:
        return PreparedFile(entry, facts, pixels=pixels)
    reading, note = (donated, "") if donated is not None else _read(text_reader, decoded)
    texts = facts.texts if reading.text is None else (*facts.texts, reading.text)
    facts = replace(facts, texts=texts, ocr=reading.signature)
    return PreparedFile(entry, facts, pixels=pixels, ocr_note=note, text_reused=donated is not None)


def _read(text_reader: TextReader, decoded: DecodedImage) -> tuple[OcrReading, str]:
    read = text_reader.read(decoded)
    return read.reading, read.note
