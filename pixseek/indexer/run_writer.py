"""The writing side of one indexing run: prepared files into batches, each batch into SQL then FAISS.

It holds what lives only as long as a run (the batch being filled, the rows already moved, the
progress count, the time of the last save) and the rules that turn a prepared file into a change:
move or copy a stored vector for known content, embed new content once per batch, sweep rows whose
file is gone. Planning (what to prepare) stays with :class:`pixseek.indexer.pipeline.Indexer`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from pixseek.indexer.preparation import PreparedFile
from pixseek.store.records import ChangeBatch, KnownFile

if TYPE_CHECKING:
    from pixseek.indexer.pipeline import Indexer, IndexReport, ProgressCallback


class RunWriter:
    """State of one indexing run: the batch being filled and the moves already made."""

    def __init__(
        self,
        indexer: Indexer,
        known: dict[str, KnownFile],
        report: IndexReport,
        progress: ProgressCallback | None,
        *,
        total: int,
        done: int,
    ):
        self.indexer = indexer
        self.known = known
        self.report = report
        self.progress = progress
        self.total = total
        self.done = done
        if progress:
            progress(done, total)
        self.batch = ChangeBatch()
        self.pending: list[PreparedFile] = []  # to store with a vector: embedded here or by a worker
        self.moved_ids: set[int] = set()
        self.last_save = time.monotonic()

    def take(self, prepared: PreparedFile) -> None:
        facts = prepared.facts
        old = self.known.get(facts.path)
        if prepared.vanished:
            self._advance()
            return
        if old is not None and not self._is_own_row(prepared, old):
            self.batch.deleted.append(old.id)  # content changed: the new vector gets a new id
        if facts.ocr is not None:  # OCR read the picture in its decoding thread (or reused a reading)
            self.report.text_read += 1
            self.report.text_reused += prepared.text_reused
        if prepared.ocr_note:
            self.report.text_unread.append((facts.path, prepared.ocr_note))
        if prepared.error is not None:
            self.batch.failed.append((facts, prepared.error))
            self.report.failed.append((facts.path, prepared.error))
        elif prepared.reuse_candidates:
            self._reuse(prepared)
        else:
            self.pending.append(prepared)
        self._advance()
        if (
            len(self.pending) >= self.indexer.batch_size
            or len(self.batch.moved) + len(self.batch.failed) >= 500
        ):
            self.flush()

    def _is_own_row(self, prepared: PreparedFile, old: KnownFile) -> bool:
        return any(image_id == old.id for image_id, _ in prepared.reuse_candidates)

    def _reuse(self, prepared: PreparedFile) -> None:
        """Same content as an indexed image: move its row if its file is gone, else copy its vector."""
        facts = prepared.facts
        for image_id, path in prepared.reuse_candidates:
            if image_id in self.moved_ids:
                continue
            if path == facts.path or not os.path.lexists(path):
                self.moved_ids.add(image_id)
                self.batch.moved.append((image_id, facts))
                if path != facts.path:
                    self.report.moved += 1
                return
        source_id = prepared.reuse_candidates[0][0]
        store = self.indexer.store
        _, vectors = store.embeddings([source_id], self.indexer.collection.dim)
        source = store.images([source_id]).get(source_id)
        if len(vectors) == 0 or source is None:  # removed by a concurrent writer; the next run embeds it
            reason = f"indexed copy {source_id} disappeared during indexing; run again"
            self.batch.failed.append((facts, reason))
            self.report.failed.append((facts.path, reason))
            return
        # A copy is the same picture: it takes the original's OCR and EXIF/XMP text (no OCR run);
        # the store gives it the path words of its own path.
        texts = tuple(store.keyword_texts([source_id], with_paths=False).get(source_id, ()))
        self.batch.indexed.append((replace(facts.with_metadata_of(source), texts=texts), vectors[0]))
        self.report.copied += 1

    def _advance(self) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)

    def flush(self) -> None:
        indexer = self.indexer
        if self.pending:
            self._embed_pending()
        if not self.batch:
            return
        changes = indexer.store.apply(indexer.collection.id, self.batch)
        indexer.vectors.update(
            changes.added_ids, changes.added_vectors, changes.removed_ids, changes.generation
        )
        self.batch = ChangeBatch()
        if time.monotonic() - self.last_save > indexer.save_every_seconds:
            indexer.save_vectors()
            self.last_save = time.monotonic()

    def _embed_pending(self) -> None:
        """Embed the batch's new images once per content: a file whose content another file of this
        run already has (indexed by an earlier batch since its worker looked, or earlier in this
        batch) reuses that vector instead of a second model call."""
        pending, self.pending = self.pending, []
        digests = [prepared.facts.content_hash or "" for prepared in pending]  # always set once read
        committed = self.indexer.store.indexed_by_hash(self.indexer.collection.id, digests)
        originals: dict[str, PreparedFile] = {}
        to_store: list[tuple[PreparedFile, str]] = []
        for prepared, digest in zip(pending, digests, strict=True):
            if digest in committed:
                self._reuse(replace(prepared, reuse_candidates=tuple(committed[digest])))
            else:
                originals.setdefault(digest, prepared)
                to_store.append((prepared, digest))
        to_embed = [p.pixels for p in originals.values() if p.vector is None and p.pixels is not None]
        computed = iter(self.indexer.encoder.embed_pixels(np.stack(to_embed)) if to_embed else ())
        vectors = {  # whoever ran the model (here, or a worker that sent its vector), in input order
            digest: prepared.vector if prepared.vector is not None else next(computed)
            for digest, prepared in originals.items()
        }
        for prepared, digest in to_store:
            self.batch.indexed.append((prepared.facts, vectors[digest]))
        self.report.embedded += len(originals)
        self.report.copied += len(to_store) - len(originals)

    def sweep(self, unseen_paths: Iterator[str]) -> None:
        """Rows whose file is gone from disk leave SQL and FAISS; files merely not walked stay."""
        for path in unseen_paths:
            row = self.known.get(path)
            if row is None or row.id in self.moved_ids or os.path.lexists(path):
                continue
            self.batch.deleted.append(row.id)
            self.report.removed += 1
            if len(self.batch.deleted) >= 500:
                self.flush()
        self.flush()
