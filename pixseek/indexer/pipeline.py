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
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pixseek.embedding import Encoder
from pixseek.indexer.walker import FileEntry, is_under, refuse_excluded, walk_images
from pixseek.media.decode import DEFAULT_MAX_PIXELS, DecodedImage, DecodeError, decode_image
from pixseek.media.files import FileOpener
from pixseek.media.hashing import content_hash
from pixseek.store.models import FOLDER_EXCLUDED, FOLDER_ROOT, STATUS_FAILED, ImageRecord
from pixseek.store.repository import ChangeBatch, CollectionInfo, FileFacts, KnownFile, Store
from pixseek.store.vector_index import VectorIndex

log = logging.getLogger(__name__)
DEFAULT_OPENER = FileOpener()  # anywhere, following symlinks, files up to DEFAULT_MAX_FILE_BYTES

ProgressCallback = Callable[[int, int], None]


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
        for name in ("scanned", "unchanged", "embedded", "moved", "copied", "removed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failed.extend(other.failed)
        self.unreadable.extend(other.unreadable)
        self.seconds += other.seconds
        return self


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


def _storable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _facts(entry: FileEntry, digest: str | None, decoded: DecodedImage | None = None) -> FileFacts:
    facts = FileFacts(path=str(entry.path), size=entry.size, mtime_ns=entry.mtime_ns, content_hash=digest)
    if decoded is None:
        return facts
    meta = decoded.metadata
    return replace(
        facts,
        format=meta.format,
        width=meta.width,
        height=meta.height,
        taken_at=meta.taken_at,
        camera=meta.camera,
        orientation=meta.orientation,
        gps_lat=meta.gps_lat,
        gps_lon=meta.gps_lon,
    )


def prepare_file(
    entry: FileEntry,
    store: Store,
    collection_id: int,
    encoder: Encoder,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    opener: FileOpener = DEFAULT_OPENER,
) -> PreparedFile:
    """Read, hash and (unless an indexed image has the same content) decode and preprocess one file.

    A module-level function, not a method, so that a remote worker holding its own store connection
    and model (a Ray actor) applies exactly the rules of the local decode pool. The file is read
    through ``opener``: one open, checked on its descriptor, so a file replaced since the walk by a
    FIFO, a device, an oversized file or (when confined) a symlink fails alone, with its reason.
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
    try:
        decoded = decode_image(data, min_side=encoder.image_min_side, max_pixels=max_pixels)
        pixels = encoder.preprocess_image(decoded.image)
    except DecodeError as error:
        return PreparedFile(entry, _facts(entry, digest), error=error.reason)
    except Exception as error:  # a processor bug on one odd image must not stop the run
        log.exception("preprocessing %s failed", entry.path)
        return PreparedFile(entry, _facts(entry, digest), error=f"preprocessing failed: {error}")
    return PreparedFile(entry, _facts(entry, digest, decoded), pixels=pixels)


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

    # ---- worker side -------------------------------------------------------------------------
    def _prepare(self, entry: FileEntry) -> PreparedFile:
        return prepare_file(entry, self.store, self.collection.id, self.encoder, self.max_pixels, self.opener)

    def _prepared_stream(
        self, pool: ThreadPoolExecutor, entries: Sequence[FileEntry]
    ) -> Generator[PreparedFile, None, None]:
        """Results in input order, with a bounded number of files in flight (a few batches ahead)."""
        ahead = max(self.batch_size * 3, self.workers * 4)
        pending: deque[Future[PreparedFile]] = deque()
        source = iter(entries)
        try:
            for entry in source:
                pending.append(pool.submit(self._prepare, entry))
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
            contextlib.closing(self._prepared_stream(pool, todo)) as stream,
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
        run = _Run(self, known, report, progress, total=len(entries), done=len(entries) - len(todo))
        try:
            with self._prepared_files(todo) as stream:
                for prepared in stream:
                    run.take(prepared)
            run.flush()
            if sweep:
                walked = {str(entry.path) for entry in entries}
                run.sweep(path for path in known if path not in walked)
        finally:
            if save:
                self.save_vectors()
            report.seconds = time.perf_counter() - started
        return report


class _Run:
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
        self.batch.indexed.append((_with_metadata_of(facts, source), vectors[0]))
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


def _with_metadata_of(facts: FileFacts, source: ImageRecord) -> FileFacts:
    """A copy's facts with its original's image metadata: same content, same pixels and EXIF."""
    return replace(
        facts,
        format=source.format,
        width=source.width,
        height=source.height,
        taken_at=source.taken_at,
        camera=source.camera,
        orientation=source.orientation,
        gps_lat=source.gps_lat,
        gps_lon=source.gps_lon,
    )
