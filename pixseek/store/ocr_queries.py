"""The SQL of OCR at index time: a collection's OCR setting, and images' OCR words with the mark of
what read them.

A part of :class:`pixseek.store.repository.Store` (a mixin it inherits). The words themselves go to
the keyword index (``image_texts``, source ``ocr``) through the same rows the indexer writes for a
new image; ``images.ocr`` records the engine and languages that read each picture, so that a run
with OCR on reads exactly the images not yet read that way (revision 0005).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from pixseek.store.keyword_queries import text_rows, write_texts
from pixseek.store.models import STATUS_INDEXED, Collection, ImageRecord, ImageText
from pixseek.store.query_parts import id_chunks
from pixseek.store.records import TEXT_OCR, KeywordText
from pixseek.store.sessions import Sessions


@dataclass(frozen=True)
class OcrReading:
    """What OCR made of one stored image: its text (None: no words) and the signature that read it."""

    signature: str
    text: KeywordText | None


class OcrQueries:
    _session: Sessions

    def set_collection_ocr(
        self, collection_id: int, engine: str | None, languages: Sequence[str] = ()
    ) -> None:
        """Record the OCR every later indexing run of the collection applies (None: none)."""
        with self._session.begin() as session:
            session.execute(
                update(Collection)
                .where(Collection.id == collection_id)
                .values(ocr_engine=engine, ocr_languages=",".join(languages) if engine else None)
            )

    def record_ocr(self, readings: Mapping[int, OcrReading]) -> int:
        """Replace the OCR text of each image by its reading and mark it read, in one transaction,
        so that an interrupted run never leaves an image marked read without its words. Images
        removed (or failed) meanwhile are skipped. Returns how many images were recorded."""
        recorded = 0
        with self._session.begin() as session:
            for chunk in id_chunks(list(readings)):
                present: dict[int, int] = {
                    image_id: collection_id
                    for image_id, collection_id in session.execute(
                        select(ImageRecord.id, ImageRecord.collection_id).where(
                            ImageRecord.id.in_(chunk), ImageRecord.status == STATUS_INDEXED
                        )
                    )
                }
                session.execute(
                    delete(ImageText).where(ImageText.image_id.in_(chunk), ImageText.source == TEXT_OCR)
                )
                rows = []
                for image_id in chunk:
                    reading = readings[image_id]
                    if image_id not in present:
                        continue
                    if reading.text is not None:
                        rows.extend(text_rows(image_id, present[image_id], [reading.text]))
                    session.execute(
                        update(ImageRecord).where(ImageRecord.id == image_id).values(ocr=reading.signature)
                    )
                    recorded += 1
                write_texts(session, rows)
        return recorded
