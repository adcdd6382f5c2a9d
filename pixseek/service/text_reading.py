"""Which OCR a collection's indexing runs apply: the user's choice (``index --ocr``), recorded on the
collection like its model, and the loaded engine every later run (``index``, ``watch``, a server's
indexing jobs) reads images with, without being told again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pixseek.errors import PixseekError
from pixseek.store.records import CollectionInfo
from pixseek.store.repository import Store
from pixseek.vocabulary import OcrEngine

if TYPE_CHECKING:
    from pixseek.indexer.text_reading import TextReader


@dataclass(frozen=True)
class OcrChoice:
    """What a command asked for: ``enabled`` None keeps the collection's record; languages or an
    engine given alone turn OCR on (or change it) for a collection."""

    enabled: bool | None = None
    languages: tuple[str, ...] = ()
    engine: OcrEngine | None = None

    def __post_init__(self) -> None:
        if self.enabled is False and (self.languages or self.engine):
            raise PixseekError("--ocr-lang and --ocr-engine need OCR on; leave out --no-ocr")

    @property
    def asked(self) -> bool:
        return self.enabled is not None or bool(self.languages) or self.engine is not None


class TextReaders:
    """The OCR engines loaded by one library, one per engine and languages, shared by its runs."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, tuple[str, ...]], TextReader] = {}

    def load(self, engine: OcrEngine | str, languages: tuple[str, ...]) -> TextReader:
        """The engine for ``languages`` (``auto`` resolved), loaded once; a missing extra or
        language is a one-line :class:`PixseekError`."""
        from pixseek.indexer.text_reading import TextReader
        from pixseek.ocr.languages import parse_languages
        from pixseek.ocr.loader import load_ocr, resolve_engine

        codes = parse_languages(languages or None)
        key = (resolve_engine(engine, codes).value, codes)
        if key not in self._loaded:
            self._loaded[key] = TextReader(load_ocr(key[0], codes))
        return self._loaded[key]

    def for_choice(self, choice: OcrChoice, collection: CollectionInfo | None) -> TextReader | None:
        """The engine ``choice`` asks for over ``collection``'s record (None: no OCR)."""
        if choice.enabled is False:
            return None
        if not choice.asked:
            return self.for_collection(collection) if collection is not None else None
        recorded = collection.ocr_engine if collection is not None else None
        engine = choice.engine or (OcrEngine(recorded) if recorded else OcrEngine.AUTO)
        languages = choice.languages or (collection.ocr_languages if collection is not None else ())
        return self.load(engine, languages)

    def for_collection(self, collection: CollectionInfo) -> TextReader | None:
        """The engine the collection records (None: it has no OCR)."""
        if not collection.ocr_engine:
            return None
        return self.load(collection.ocr_engine, collection.ocr_languages)

    def close(self) -> None:
        for reader in self._loaded.values():
            reader.close()
        self._loaded.clear()


def record_choice(store: Store, collection: CollectionInfo, reader: TextReader | None) -> CollectionInfo:
    """Record ``reader``'s engine and languages (None: OCR off) on the collection; its info after."""
    engine = reader.reader.name if reader is not None else None
    languages = reader.reader.languages if reader is not None else ()
    if (engine, languages) != (collection.ocr_engine, collection.ocr_languages if engine else ()):
        store.set_collection_ocr(collection.id, engine, languages)
    refreshed = store.collection(collection.name)
    if refreshed is None:
        raise PixseekError(f"collection {collection.name!r} was dropped meanwhile")
    return refreshed
