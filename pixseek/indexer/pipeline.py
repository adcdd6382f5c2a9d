"""Incremental indexing: walk, skip what is unchanged, reuse vectors of moved files, embed the rest.

Reading, hashing, decoding and preprocessing run in a thread pool that stays a few batches ahead of
the model (Pillow and numpy release the GIL), so the model never waits for a file to be read. On a
2-core CPU decoding 12 MP JPEGs still takes a large share of the cores (docs/benchmarks.md). Each
batch is one SQL transaction followed by the matching FAISS update: an interrupted run loses at most
the batch in flight, and the next run skips everything already committed.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pixseek.embedding import Encoder
from pixseek.indexer.preparation import DEFAULT_OPENER, PreparedFile, prepare_file
from pixseek.indexer.run_writer import RunWriter
from pixseek.indexer.text_reading import FileTextRead, TextReader
from pixseek.indexer.walker import FileEntry, is_under, refuse_excluded, walk_images
from pixseek.media.decode import DEFAULT_MAX_PIXELS
from pixseek.media.files import FileOpener
from pixseek.store.models import FOLDER_EXCLUDED, FOLDER_ROOT, STATUS_FAILED, STATUS_INDEXED
from pixseek.store.ocr_queries import OcrReading
from pixseek.store.records import CollectionInfo, KnownFile
from pixseek.store.repository import Store
from pixseek.store.vector_index import VectorIndex

ProgressCallback = Callable[[int, int], None]
Item = TypeVar("Item")
Result = TypeVar("Result")
OCR_WRITE_BATCH = 64  # images whose OCR words one transaction records during a backfill


@dataclass
class IndexReport:
    scanned: int = 0
    unchanged: int = 0
    embedded: int = 0
    moved: int = 0
    copied: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    # Folders the walk could not list (path, reason): their images are neither indexed nor swept.
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    # OCR (a collection indexed with --ocr): pictures read, and those it could not read (path, why);
    # such a picture is still indexed and searchable by its meaning, only without its words.
    text_read: int = 0
    text_reused: int = 0  # of those, read by the donor collection (a build beside it): not read again
    text_unread: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0

    @property
    def changes(self) -> int:
        """Images added, moved, copied, removed or recorded as failed: 0 when the store is as it was."""
        return self.embedded + self.moved + self.copied + self.removed + len(self.failed)

    def merge(self, other: IndexReport) -> IndexReport:
        """This report plus ``other``'s counts and lists (several rescans answering one job)."""
        for name in (
            "scanned",
            "unchanged",
            "embedded",
            "moved",
            "copied",
            "removed",
            "text_read",
            "text_reused",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failed.extend(other.failed)
        self.unreadable.extend(other.unreadable)
        self.text_unread.extend(other.text_unread)
        self.seconds += other.seconds
        return self


def _storable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Indexer:
    def __init__(
        self,
        store: Store,
        collection: CollectionInfo,
        vectors: VectorIndex,
        encoder: Encoder,
        *,
        batch_size: int = 32,
        workers: int = 2,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        save_vectors: Callable[[], None] = lambda: None,
        save_every_seconds: float = 300.0,
        opener: FileOpener | None = None,
        text_reader: TextReader | None = None,
    ):
        self.store = store
        self.collection = collection
        self.vectors = vectors
        self.encoder = encoder
        self.batch_size = batch_size
        self.workers = workers
        self.max_pixels = max_pixels
        self.save_vectors = save_vectors
        self.save_every_seconds = save_every_seconds
        self.opener = opener or DEFAULT_OPENER  # a server's is confined to its library roots
        self.text_reader = text_reader  # OCR, when the collection records it (index --ocr)
        # A collection whose OCR words of the same pictures may be reused (the active one, when a
        # collection is built beside it with another model): pixseek.service.collections.
        self.text_donor: int | None = None

    # ---- worker side -------------------------------------------------------------------------
    def _prepare(self, entry: FileEntry) -> PreparedFile:
        return prepare_file(
            entry,
            self.store,
            self.collection.id,
            self.encoder,
            self.max_pixels,
            self.opener,
            self.text_reader,
            self.text_donor,
        )

    def _ordered(
        self, pool: ThreadPoolExecutor, work: Callable[[Item], Result], items: Iterable[Item]
    ) -> Generator[Result, None, None]:
        """``work`` of each item in input order, with a bounded number in flight (a few batches
        ahead of the writer, never the whole run's files queued at once)."""
        ahead = max(self.batch_size * 3, self.workers * 4)
        pending: deque[Future[Result]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(work, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

    @contextlib.contextmanager
    def _prepared_files(self, todo: Sequence[FileEntry]) -> Iterator[Iterator[PreparedFile]]:
        """The files to index, prepared in input order. The one hook a distributed indexer replaces
        (it prepares and embeds on remote workers); planning, batching and writing stay here."""
        with (
            ThreadPoolExecutor(self.workers, thread_name_prefix="pixseek-decode") as pool,
            # Closed explicitly so that on Ctrl-C the queued files are cancelled, not decoded.
            contextlib.closing(self._ordered(pool, self._prepare, todo)) as stream,
        ):
            yield stream

    # ---- what the collection keeps out, and where it came from ---------------------------------
    def excluded(self) -> list[str]:
        """Paths ``pixseek rm`` removed from the collection: never walked, indexed or swept."""
        return self.store.folders(self.collection.id, FOLDER_EXCLUDED)

    def check_roots(self, roots: Sequence[Path], excluded: Sequence[str] | None = None) -> None:
        """Refuse roots that ``pixseek rm`` keeps out of the collection, with the way to undo it."""
        refuse_excluded(roots, self.excluded() if excluded is None else excluded, self.collection.name)

    def _record_roots(self, roots: Sequence[Path]) -> None:
        """Remember the folders indexed (outermost only), so that ``serve`` can default to them."""
        folders = [str(root) for root in roots if root.is_dir()]
        recorded = self.store.folders(self.collection.id, FOLDER_ROOT)
        new = [f for f in folders if not any(is_under(f, old) for old in recorded)]
        if new:
            inner = [old for old in recorded if any(is_under(old, f) for f in new)]
            self.store.remove_folders(self.collection.id, FOLDER_ROOT, inner)
            self.store.add_folders(self.collection.id, FOLDER_ROOT, new)

    # ---- main side ---------------------------------------------------------------------------
    def run(
        self,
        roots: Sequence[Path],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        include_hidden: bool = False,
        follow_symlinks: bool = True,
        sweep: bool = True,
        retry_failed: bool = False,
        progress: ProgressCallback | None = None,
    ) -> IndexReport:
        if not follow_symlinks and not self.opener.confined:
            # The walk skips symlinks; the reads must not follow one swapped in after it either.
            confined = copy.copy(self)
            confined.opener = self.opener.beneath(roots)
            return confined.run(
                roots,
                include=include,
                exclude=exclude,
                include_hidden=include_hidden,
                follow_symlinks=False,
                sweep=sweep,
                retry_failed=retry_failed,
                progress=progress,
            )
        started = time.perf_counter()  # the walk counts: it is part of the run the user waits for
        roots = [Path(os.path.abspath(root)) for root in roots]
        excluded = self.excluded()
        self.check_roots(roots, excluded)
        unreadable: list[tuple[str, str]] = []
        entries = list(
            walk_images(
                roots,
                include=include,
                exclude=exclude,
                include_hidden=include_hidden,
                follow_symlinks=follow_symlinks,
                skip=excluded,
                on_unreadable=lambda path, reason: unreadable.append((path, reason)),
            )
        )
        self._record_roots(roots)
        known = self.store.known_files(self.collection.id, [str(root) for root in roots])
        # Images under a folder that could not be listed are not gone: keep them out of the sweep.
        known_walkable = {
            path: row for path, row in known.items() if not any(is_under(path, f) for f, _ in unreadable)
        }
        report = self._index(
            entries,
            known_walkable,
            started,
            sweep=sweep,
            retry_failed=retry_failed,
            progress=progress,
            save=True,
        )
        report.unreadable.extend(unreadable)
        return report

    def update(
        self,
        entries: Sequence[FileEntry],
        *,
        paths: Iterable[str] = (),
        folders: Iterable[str] = (),
        progress: ProgressCallback | None = None,
    ) -> IndexReport:
        """Bring only what changed in step, for a watcher that knows which paths those are.

        ``entries`` (files the caller found, walked by its own rules) are indexed as by :meth:`run`,
        earlier failures among them retried: a change is the user's fix (a chmod, a re-copy).
        Rows at ``paths`` or under ``folders`` whose files are gone from disk leave the index.
        Nothing else is walked, and the vector index is not saved: a watcher applies many small
        updates and saves when idle; a reader that finds the file behind SQL catches up on open.
        """
        started = time.perf_counter()
        excluded = self.excluded()
        entries = [entry for entry in entries if not any(is_under(str(entry.path), x) for x in excluded)]
        files = [str(entry.path) for entry in entries]
        known = self.store.known_paths(self.collection.id, [*files, *paths], folders)
        return self._index(
            entries, known, started, sweep=True, retry_failed=True, progress=progress, save=False
        )

    def _index(
        self,
        entries: Sequence[FileEntry],
        known: dict[str, KnownFile],
        started: float,
        *,
        sweep: bool,
        retry_failed: bool,
        progress: ProgressCallback | None,
        save: bool,
    ) -> IndexReport:
        report = IndexReport(scanned=len(entries))
        todo: list[FileEntry] = []
        for entry in entries:
            if not _storable(str(entry.path)):
                # Undecodable bytes in a file name (surrogate escapes) cannot be stored as SQL text.
                report.failed.append(
                    (ascii(str(entry.path)), "file name is not valid UTF-8; rename the file")
                )
                continue
            row = known.get(str(entry.path))
            unchanged = row is not None and (row.size, row.mtime_ns) == (entry.size, entry.mtime_ns)
            if row is not None and unchanged and not (retry_failed and row.status == STATUS_FAILED):
                report.unchanged += 1
            else:
                todo.append(entry)
        run = RunWriter(self, known, report, progress, total=len(entries), done=len(entries) - len(todo))
        try:
            with self._prepared_files(todo) as stream:
                for prepared in stream:
                    run.take(prepared)
            run.flush()
            if sweep:
                walked = {str(entry.path) for entry in entries}
                run.sweep(path for path in known if path not in walked)
            if self.text_reader is not None:
                self._read_texts([str(entry.path) for entry in entries], report, progress, run.total)
        finally:
            if save:
                self.save_vectors()
            report.seconds = time.perf_counter() - started
        return report

    def _read_texts(
        self, paths: Sequence[str], report: IndexReport, progress: ProgressCallback | None, done: int
    ) -> None:
        """OCR for the indexed images among ``paths`` that the collection's OCR has not read yet
        (indexed before OCR was turned on or its languages changed, copies of unread originals,
        images embedded by Ray actors): each file is read and decoded again, since its vector is
        already stored. The progress bar goes on past the files embedded, one step per image."""
        reader = self.text_reader
        assert reader is not None
        rows = self.store.known_paths(self.collection.id, paths)
        todo = [
            (row.id, path)
            for path, row in rows.items()
            if row.status == STATUS_INDEXED and row.ocr != reader.signature
        ]
        if not todo:
            return
        total = done + len(todo)

        def read(item: tuple[int, str]) -> FileTextRead:
            return reader.read_file(item[0], item[1], self.opener, self.max_pixels)

        readings: dict[int, OcrReading] = {}
        with (
            ThreadPoolExecutor(self.workers, thread_name_prefix="pixseek-ocr") as pool,
            contextlib.closing(self._ordered(pool, read, todo)) as results,
        ):
            for position, result in enumerate(results, start=1):
                if result.read is None:
                    report.text_unread.append((result.path, result.error or "unreadable"))
                else:
                    readings[result.image_id] = result.read.reading
                    report.text_read += 1
                    if result.read.note:
                        report.text_unread.append((result.path, result.read.note))
                if len(readings) >= OCR_WRITE_BATCH:
                    self.store.record_ocr(readings)
                    readings = {}
                if progress:
                    progress(done + position, total)
            if readings:
                self.store.record_ocr(readings)
