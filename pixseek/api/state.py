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
from pixseek.api.jobs import JobManager
from pixseek.api.metrics import Metrics
from pixseek.api.roots import LibraryRoots
from pixseek.api.thumbnails import ThumbnailCache
from pixseek.errors import NotFoundError, PixseekError
from pixseek.library import IndexedImage, Library
from pixseek.media.files import FileOpener

if TYPE_CHECKING:
    from pixseek.library import IndexReport, Watcher


class AppState:
    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.roots = LibraryRoots(settings.library_roots)
        # Every file the server reads or serves is opened through this: beneath a root, no symlink
        # followed on the way, checked on the open descriptor (a path checked, then opened again by
        # name, can be swapped for a link out of the root in between).
        self.files = FileOpener(tuple(self.roots.paths), settings.max_file_bytes)
        self.library = Library(settings, serving=True, opener=self.files)
        self.thumbnails = ThumbnailCache(settings.data_dir / "thumbnails", self.files)
        self.jobs = JobManager(self._run_index, on_finished=self.library.serving.forget_searcher)
        self.metrics = Metrics(self)
        self.watcher: Watcher | None = None
        self._watch_thread: threading.Thread | None = None

    def close(self) -> None:
        if self.watcher is not None and self._watch_thread is not None:
            self.watcher.stop()
            self._watch_thread.join(timeout=30)
        self.jobs.close()
        self.library.close()

    @property
    def rerankers(self) -> tuple[str, ...]:
        """The re-rankers this server offers: the ones ``settings.rerank`` names."""
        return self.library.rerank_kinds()

    def warm_up(self) -> None:
        """Load the models and index at start-up, not on the first user's request; start watching."""
        self.library.serving.warm_up()
        if self.settings.watch and self.roots:
            self.watcher = self.library.serving.watcher(
                [Path(root) for root in self.roots.paths],
                follow_symlinks=False,
                force_polling=self.settings.watch_poll,
            )
            self._watch_thread = threading.Thread(target=self.watcher.run, name="pixseek-watch", daemon=True)
            self._watch_thread.start()

    def served_image(self, image_id: int) -> IndexedImage:
        """Image ``image_id`` if it is indexed and lies inside a library root, else NotFoundError."""
        image = self.library.indexed_image(image_id)
        if self.roots.locate(image.path) is None:  # indexed from elsewhere: never served here
            raise NotFoundError(
                f"image {image_id} is outside the folders this server serves (its library roots: "
                f"{', '.join(self.roots.by_name) or 'none'})"
            )
        return image

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

    def scope(self, folders: list[str]) -> tuple[str, ...]:
        """Folders a search may return images from: the requested ones (validated), or every root
        when the collection also holds images indexed elsewhere (e.g. by the CLI)."""
        if folders:
            return tuple(self.roots.resolve(folder) for folder in folders)
        searchable, indexed = self.counts()
        return tuple(self.roots.paths) if searchable != indexed else ()

    def counts(self) -> tuple[int, int]:
        """(indexed images under the served roots, indexed images in the collection)."""
        return self.library.serving.counts(self.roots.paths)

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
