"""The collections one server process serves: a serving library per collection, made on first use,
and the builds of new collections running in the background.

Which collection a request without a name uses is read from SQL on every request (one indexed
lookup, well under a millisecond), so an activation by any process, the CLI included, is seen by
the next request of every server process, without a restart or a message between them. A server
started with ``-c NAME`` serves NAME whatever is active.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pixseek.api.config import ServerSettings
from pixseek.config import DEFAULT_COLLECTION
from pixseek.errors import ConflictError, NotFoundError
from pixseek.library import Library, check_collection_name
from pixseek.media.files import FileOpener

if TYPE_CHECKING:
    from pixseek.service.collections import BuildPlan


@dataclass
class Build:
    """A collection being built by this process: its progress, and how it ended."""

    name: str
    state: Literal["running", "done", "failed"] = "running"
    done: int = 0
    total: int | None = None
    error: str | None = None
    finished: threading.Event = field(default_factory=threading.Event)


class ServedCollections:
    def __init__(self, settings: ServerSettings, opener: FileOpener):
        self.settings = settings
        self.opener = opener
        self._lock = threading.Lock()
        self.first = Library(settings, serving=True, opener=opener)  # the one started with (--model)
        self._libraries: dict[str, Library] = {self.first.collection_name: self.first}
        self.builds: dict[str, Build] = {}

    def active_name(self) -> str:
        """The collection a request without a name uses: ``-c`` if the server was given one, else
        the active collection recorded in SQL, else ``default``."""
        if self.settings.collection is not None:
            return self.settings.collection
        return self.first.store.active_collection_name() or DEFAULT_COLLECTION

    def library(self, name: str | None = None) -> Library:
        """The serving library of collection ``name`` (default: the active one)."""
        name = check_collection_name(name) if name is not None else self.active_name()
        with self._lock:
            found = self._libraries.get(name)
            if found is not None:
                return found
        if self.first.store.collection(name) is None:
            raise NotFoundError(f"no collection {name!r}")
        library = Library(
            self.settings.model_copy(update={"collection": name, "model": None}),
            serving=True,
            opener=self.opener,
        )
        with self._lock:
            if name in self._libraries:  # another request made it meanwhile
                library.close()
                return self._libraries[name]
            self._libraries[name] = library
            return library

    def loaded(self) -> list[Library]:
        """The libraries this process serves now (the active one first made, then the others)."""
        with self._lock:
            return list(self._libraries.values())

    def start_build(self, name: str, model: str, roots: list[Path]) -> Build:
        """Check and plan the build of ``name`` with ``model`` now (so that a taken name, a
        collection being built here, an unknown model or a missing folder is this request's 4xx),
        then index in a background thread while every other collection keeps answering."""
        check_collection_name(name)
        with self._lock:
            running = self.builds.get(name)
            if running is not None and running.state == "running":
                raise ConflictError(f"collection {name!r} is being built already")
        library = Library(
            self.settings.model_copy(update={"collection": name, "model": model}), opener=self.opener
        )
        try:
            plan = library.plan_build(library.load_encoder(), roots)
        except BaseException:
            library.close()
            raise
        build = Build(name)
        with self._lock:
            self.builds[name] = build
        threading.Thread(
            target=self._build, args=(library, plan, build), name=f"pixseek-build-{name}"
        ).start()
        return build

    def _build(self, library: Library, plan: BuildPlan, build: Build) -> None:
        def progress(done: int, total: int) -> None:
            build.done, build.total = done, total

        try:
            library.build(plan, progress)
            build.state = "done"
        except Exception as error:  # reported on GET /collections; the collection stays 'building'
            build.state, build.error = "failed", f"{type(error).__name__}: {error}"[:500]
        finally:
            library.close()
            build.finished.set()

    def activate(self, name: str) -> Library:
        """Load ``name``'s model and index, then make it the active collection (one transaction):
        the requests after it run on ``name``, and none waits for its model to load."""
        library = self.library(name)
        info = library.store.collection(name)
        if info is not None and info.state == "ready":
            library.serving.warm_up()
        library.activate(name)
        return library

    def remove(self, name: str) -> None:
        """Delete ``name`` (not the active one, nor one this process is building)."""
        with self._lock:
            running = self.builds.get(name)
        if running is not None and running.state == "running":
            raise ConflictError(f"collection {name!r} is being built: wait for the build to finish")
        self.first.check_removable(name)
        with self._lock:
            library = self._libraries.pop(name, None) if name != self.first.collection_name else None
        if library is not None:
            library.close()
        self.first.remove_collection(name)

    def close(self) -> None:
        for build in list(self.builds.values()):
            build.finished.wait(timeout=30)
        with self._lock:
            libraries, self._libraries = list(self._libraries.values()), {}
        for library in libraries:
            library.close()
