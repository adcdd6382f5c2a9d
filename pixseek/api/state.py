"""What one server process holds: settings, roots, the library, jobs, the watcher, metrics.

The model, the FAISS index, the searcher and the re-rankers are the library's (a serving
:class:`~pixseek.library.Library` loads them once and shares them between request threads); what
is here is the server's own: the folders it serves, the files it opens, thumbnails, indexing jobs
and the watcher. Searches carry all their parameters in arguments (no shared mutable search
state), and the index is updated in place under its lock by the indexing job, so searches keep
working while a job writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pixseek.api.config import ServerSettings
from pixseek.api.jobs import JobManager, SharedJobManager
from pixseek.api.metrics import Metrics
from pixseek.api.roots import LibraryRoots
from pixseek.api.served import ServedCollections
from pixseek.api.thumbnails import ThumbnailCache
from pixseek.errors import NotFoundError, PixseekError
from pixseek.library import IndexedImage, Library
from pixseek.media.files import FileOpener

if TYPE_CHECKING:
    from pixseek.library import IndexReport, OcrChoice, Watcher
    from pixseek.service.writer_lock import WriterElection


class AppState:
    def __init__(self, settings: ServerSettings, *, workers: int = 1):
        """``workers``: how many server processes serve this collection (``serve --workers``);
        with more than one, this one writes only while it holds the writer lock (see
        :meth:`_share_with_workers`)."""
        self.settings = settings
        self.roots = LibraryRoots(settings.library_roots)
        # Every file the server reads or serves is opened through this: beneath a root, no symlink
        # followed on the way, checked on the open descriptor (a path checked, then opened again by
        # name, can be swapped for a link out of the root in between).
        self.files = FileOpener(tuple(self.roots.paths), settings.max_file_bytes)
        # One serving library per collection; `library` is the active one, looked up per request.
        self.collections = ServedCollections(settings, self.files)
        self.thumbnails = ThumbnailCache(settings.data_dir / "thumbnails", self.files)
        self.jobs: JobManager | SharedJobManager
        self.election: WriterElection | None = None
        if workers > 1:
            self._share_with_workers()
        else:
            self.jobs = JobManager(self._run_index, on_finished=self.library.serving.forget_searcher)
        self.metrics = Metrics(self)
        self.watcher: Watcher | None = None
        self._watch_thread: threading.Thread | None = None

    def close(self) -> None:
        if self.watcher is not None and self._watch_thread is not None:
            self.watcher.stop()
            self._watch_thread.join(timeout=30)
        self.jobs.close()
        if self.election is not None:
            from pixseek.service.writer_lock import save_index_only_while

            self.election.close()
            save_index_only_while(None)
        self.collections.close()

    @property
    def library(self) -> Library:
        """The active collection's serving library (the one activated last, by any process)."""
        return self.collections.library()

    def activate(self, name: str) -> None:
        """Activate ``name``; this process's watcher indexes into it from then on."""
        self.collections.activate(name)
        if self.watcher is not None and self._watch_thread is not None:
            self.watcher.stop()
            self._watch_thread.join(timeout=30)
            self.watcher, self._watch_thread = None, None
            self._start_watching()

    @property
    def rerankers(self) -> tuple[str, ...]:
        """The re-rankers this server offers: the ones ``settings.rerank`` names."""
        return self.library.rerank_kinds()

    def warm_up(self) -> None:
        """Load the models and index at start-up, not on the first user's request; start watching."""
        if self.election is not None:
            self.election.try_first()  # before the load: the first writer saves what it reconciles
        self.library.serving.warm_up()
        if self.is_writer:
            self._start_watching()
        if self.election is not None:
            self.election.start()

    def _start_watching(self) -> None:
        if self.settings.watch and self.roots:
            self.watcher = self.library.serving.watcher(
                [Path(root) for root in self.roots.paths],
                follow_symlinks=False,
                force_polling=self.settings.watch_poll,
            )
            self._watch_thread = threading.Thread(target=self.watcher.run, name="pixseek-watch", daemon=True)
            self._watch_thread.start()

    # ---- several worker processes (pixseek serve --workers N): docs/scaling.md ----------------------
    @property
    def is_writer(self) -> bool:
        """Whether this process runs indexing jobs and the watcher and saves the index: always
        with one worker; with several, the one holding the writer lock."""
        return self.election is None or self.election.writing

    def _share_with_workers(self) -> None:
        """Jobs go through files every worker reads; one worker, elected by a file lock that the
        kernel releases when its holder dies, writes; the others follow SQL's change log."""
        from pixseek.service import writer_lock

        data_dir = self.settings.data_dir
        lock = writer_lock.WriterLock(writer_lock.lock_path(data_dir, self.settings.collection))
        self.election = writer_lock.WriterElection(
            lock,
            follow=lambda: [writer_lock.follow(library) for library in self._followed_libraries()],
            on_elected=self._start_watching,
            maintain=lambda: writer_lock.trim(self.library),  # one store: the log of every collection
        )
        writer_lock.save_index_only_while(lambda: self.is_writer)
        self.jobs = SharedJobManager(
            data_dir / "serve-jobs" / (self.settings.collection or "active"),
            self._run_index,
            is_writer=lambda: self.is_writer,
            on_finished=self.library.serving.forget_searcher,
        )

    def _followed_libraries(self) -> list[Library]:
        """The libraries whose vector indexes a reading worker keeps in step with the writer."""
        return self.collections.loaded()

    def served_image(self, image_id: int) -> IndexedImage:
        """Image ``image_id`` if it is indexed and lies inside a library root, else NotFoundError."""
        image = self.library.indexed_image(image_id)
        if self.roots.locate(image.path) is None:  # indexed from elsewhere: never served here
            raise NotFoundError(
                f"image {image_id} is outside the folders this server serves (its library roots: "
                f"{', '.join(self.roots.by_name) or 'none'})"
            )
        return image

    def set_ocr(self, choice: OcrChoice) -> None:
        """Record ``choice`` on the collection (nothing when it asks for nothing); a running
        watcher's indexer reads with the engine recorded from its next change on."""
        if not choice.asked:
            return
        reader = self.library.serving.set_ocr(choice)
        if self.watcher is not None:
            self.watcher.indexer.text_reader = reader

    def _run_index(self, paths: list[str], progress: Callable[[int, int], None]) -> IndexReport:
        if self.watcher is not None:  # one writer per collection: the watcher rescans for the job
            from pixseek.library import IndexReport

            tickets = [self.watcher.rescan(path) for path in paths]
            total = IndexReport()
            for ticket in tickets:
                ticket.done.wait()
                if ticket.error is not None or ticket.report is None:
                    raise PixseekError(ticket.error or "the watcher stopped before this rescan ran")
                total.merge(ticket.report)
            return total
        return self.library.serving.index(paths, follow_symlinks=False, progress=progress)

    def scope(self, folders: list[str], library: Library | None = None) -> tuple[str, ...]:
        """Folders a search (of ``library``, default the active one) may return images from: the
        requested ones (validated), or every root when the collection also holds images indexed
        elsewhere (e.g. by the CLI)."""
        if folders:
            return tuple(self.roots.resolve(folder) for folder in folders)
        searchable, indexed = self.counts(library)
        return tuple(self.roots.paths) if searchable != indexed else ()

    def counts(self, library: Library | None = None) -> tuple[int, int]:
        """(indexed images under the served roots, indexed images in the collection)."""
        return (library or self.library).serving.counts(self.roots.paths)

    def served(self, counts: tuple[int, int] | None) -> str:
        """One sentence for /status: what a search here can return, and why not more."""
        if not self.roots:
            return "nothing is served: no library roots are configured (pixseek serve --root PATH)"
        where = f"images under the library roots {', '.join(self.roots.by_name)}"
        if counts is None:
            return f"{where}; nothing is indexed yet (POST /index)"
        searchable, indexed = counts
        note = f"{where}: {searchable} of the collection's {indexed} indexed images"
        if indexed > searchable:
            note += f"; the other {indexed - searchable} were indexed from folders this server does not serve"
        return note
