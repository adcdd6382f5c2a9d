"""Indexing jobs started over the API: one at a time, in a background thread, with progress.

Jobs run serially because two indexers on one collection would embed the same new files twice;
a queued job waits for the running one.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

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
