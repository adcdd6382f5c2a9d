"""Indexing jobs started over the API: one at a time, in a background thread, with progress.

Jobs run serially because two indexers on one collection would embed the same new files twice;
a queued job waits for the running one.

With several worker processes (``pixseek serve --workers N``) a job may be posted to any of them,
but only the writer (:mod:`pixseek.service.writer_lock`) runs it: :class:`SharedJobManager` keeps
each job as a small JSON file in the data directory, which the worker that took the request
writes (queued) and the writer picks up, runs and updates (running, progress, done or failed), so
``GET /jobs/ID`` and ``/status`` answer the same through every worker. A job the writer was
running when it died is queued again once (indexing is incremental: a rerun only finishes it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pixseek.library import IndexReport

log = logging.getLogger(__name__)

MAX_KEPT_JOBS = 100

JobState = Literal["queued", "running", "done", "failed"]
RunIndex = Callable[[list[str], Callable[[int, int], None]], "IndexReport"]


@dataclass
class Job:
    id: str
    paths: list[str]
    state: JobState = "queued"
    done: int = 0
    total: int | None = None
    embedded: int = 0
    failed: int = 0
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    finished: threading.Event = field(default_factory=threading.Event, repr=False)
    submitted_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class JobManager:
    def __init__(self, run_index: RunIndex, on_finished: Callable[[], None] = lambda: None):
        self._run_index = run_index
        self._on_finished = on_finished
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="pixseek-index-jobs", daemon=True)
        self._worker.start()

    def submit(self, paths: list[str]) -> Job:
        job = Job(id=uuid.uuid4().hex[:12], paths=paths)
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.finished.is_set()]
            for old in finished[: max(0, len(self._jobs) - MAX_KEPT_JOBS)]:
                del self._jobs[old.id]
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    @property
    def active(self) -> bool:
        return any(job.state in ("queued", "running") for job in self.all())

    def close(self) -> None:
        self._queue.put(None)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            job.state, job.started_at = "running", datetime.now(UTC)

            def progress(done: int, total: int, job: Job = job) -> None:
                job.done, job.total = done, total

            try:
                report = self._run_index(job.paths, progress)
                job.embedded, job.failed = report.embedded + report.copied, len(report.failed)
                job.state = "done"
            except Exception as error:  # a job failure is reported on the job, the server stays up
                log.exception("indexing job %s failed", job.id)
                job.state, job.error = "failed", str(error) or type(error).__name__
            finally:
                job.finished_at = datetime.now(UTC)
                job.finished.set()
                self._on_finished()


# ---- several worker processes --------------------------------------------------------------------
_JOB_ID = re.compile(r"^[0-9a-f]{12}$")
_TIMES = ("started_at", "finished_at", "submitted_at")
_FIELDS = ("id", "paths", "state", "done", "total", "embedded", "failed", "error", *_TIMES)
POLL_S = 0.2  # how often the writer looks for queued jobs
PROGRESS_EVERY_S = 0.5  # how often a running job's file is rewritten with its progress
MAX_ATTEMPTS = 2  # a job whose writer died is queued again once


class SharedJobManager:
    """:class:`JobManager`'s interface over job files in ``folder`` that every worker reads; the
    worker for which ``is_writer()`` is true runs them."""

    def __init__(
        self,
        folder: Path,
        run_index: RunIndex,
        is_writer: Callable[[], bool],
        on_finished: Callable[[], None] = lambda: None,
    ):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._run_index = run_index
        self._is_writer = is_writer
        self._on_finished = on_finished
        self._stop = threading.Event()
        self._finished: set[str] = set()  # the writer's memo of job files it need not read again
        self._worker = threading.Thread(target=self._work, name="pixseek-index-jobs", daemon=True)
        self._worker.start()

    def submit(self, paths: list[str]) -> Job:
        job = Job(id=uuid.uuid4().hex[:12], paths=paths)
        self._write(job, attempts=0)
        return job

    def get(self, job_id: str) -> Job | None:
        found = self._read(self.folder / f"{job_id}.json") if _JOB_ID.match(job_id) else None
        return found[0] if found else None

    def all(self) -> list[Job]:
        jobs = [found[0] for path in self.folder.glob("*.json") if (found := self._read(path))]
        return sorted(jobs, key=lambda job: job.submitted_at)

    @property
    def active(self) -> bool:
        return any(job.state in ("queued", "running") for job in self.all())

    def close(self) -> None:
        self._stop.set()

    # ---- the files ------------------------------------------------------------------------------
    def _write(self, job: Job, attempts: int) -> None:
        record: dict[str, Any] = {name: getattr(job, name) for name in _FIELDS}
        for name in _TIMES:
            record[name] = record[name].isoformat() if record[name] else None
        record["attempts"], record["worker"] = attempts, os.getpid()
        target = self.folder / f"{job.id}.json"
        temporary = self.folder / f".{job.id}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(record))
        os.replace(temporary, target)  # readers see the old file or the new one, never half of one

    def _read(self, path: Path) -> tuple[Job, int] | None:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):  # gone (trimmed) or not a job file
            return None
        values = {name: record.get(name) for name in _FIELDS}
        for name in _TIMES:
            values[name] = datetime.fromisoformat(values[name]) if values[name] else None
        values["submitted_at"] = values["submitted_at"] or datetime.now(UTC)
        job = Job(**values)
        if job.state in ("done", "failed"):
            job.finished.set()
        return job, int(record.get("attempts", 0))

    # ---- the writer's side ----------------------------------------------------------------------
    def _work(self) -> None:
        writing = False
        while not self._stop.wait(POLL_S):
            try:
                if not self._is_writer():
                    writing = False
                    continue
                if not writing:  # just elected: what the previous writer left running
                    self._recover()
                    writing = True
                unread = [path for path in self.folder.glob("*.json") if path.stem not in self._finished]
                queued = []
                for found in filter(None, map(self._read, unread)):
                    if found[0].finished.is_set():
                        self._finished.add(found[0].id)
                    elif found[0].state == "queued":
                        queued.append(found)
                if queued:
                    self._run(*min(queued, key=lambda found: found[0].submitted_at))
                    self._trim()
            except Exception:  # a full disk, a vanished folder: logged, tried again
                log.exception("the indexing job queue failed; retrying")
                time.sleep(1)

    def _recover(self) -> None:
        for path in self.folder.glob("*.json"):
            found = self._read(path)
            if found is None or found[0].state != "running":
                continue
            job, attempts = found
            if attempts < MAX_ATTEMPTS:
                log.warning("indexing job %s was running in a worker that died; running it again", job.id)
                job.state = "queued"
            else:
                job.state, job.error = "failed", "the worker running this job died; POST /index again"
                job.finished_at = datetime.now(UTC)
            self._write(job, attempts)

    def _run(self, job: Job, attempts: int) -> None:
        job.state, job.started_at, attempts = "running", datetime.now(UTC), attempts + 1
        self._write(job, attempts)
        written = time.monotonic()

        def progress(done: int, total: int) -> None:
            nonlocal written
            job.done, job.total = done, total
            if time.monotonic() - written >= PROGRESS_EVERY_S:
                with contextlib.suppress(OSError):
                    self._write(job, attempts)
                written = time.monotonic()

        try:
            report = self._run_index(job.paths, progress)
            job.embedded, job.failed = report.embedded + report.copied, len(report.failed)
            job.state = "done"
        except Exception as error:
            log.exception("indexing job %s failed", job.id)
            job.state, job.error = "failed", str(error) or type(error).__name__
        finally:
            job.finished_at = datetime.now(UTC)
            self._write(job, attempts)
            self._on_finished()

    def _trim(self) -> None:
        finished = [job for job in self.all() if job.state in ("done", "failed")]
        for old in finished[: max(0, len(finished) - MAX_KEPT_JOBS)]:
            (self.folder / f"{old.id}.json").unlink(missing_ok=True)
            self._finished.discard(old.id)
