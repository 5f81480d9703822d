"""Jobs: every mutating call returns one at once, and an asyncio task does the work.

The job book persists each change (state, progress, message) and tells watchers
through in-process queues, so WatchJob streams without polling the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import replace
from datetime import datetime

from manager.core.errors import ManagerError, NotFoundError
from manager.core.model import JobRecord, JobStep
from manager.core.states import JobState, change_job_state
from manager.core.store import Store

log = logging.getLogger(__name__)

RESTARTED = "the manager restarted while this job ran"
# The client's request id, while the call that carries it runs: the first job the call
# starts records it, so that the same request sent again finds that job.
_REQUESTED_ID: ContextVar[str | None] = ContextVar("requested_job_id", default=None)
STOPPED = "the manager stopped while this job ran"


class JobHandle:
    """What a job's work sees: a way to report progress."""

    def __init__(self, book: JobBook, job_id: str) -> None:
        self._book = book
        self.id = job_id

    def progress(self, percent: int, message: str) -> None:
        self._book.progress(self.id, percent, message)

    def steps(self, steps: tuple[JobStep, ...]) -> None:
        """Record the per-VM outcomes so far (they stay on the job when it ends)."""
        self._book.set_steps(self.id, steps)

    def end(self, error: str | None, summary: str = "") -> None:
        """Ends an adopted job (see JobBook.adopt): failed with `error`, or completed
        with `summary`. A job run by JobBook.start ends when its work returns."""
        if error is None:
            self._book._end(self.id, JobState.COMPLETED, summary, "")
        else:
            self._book._end(self.id, JobState.FAILED, None, error)


# The work of a job returns the sentence its completed job shows.
Work = Callable[[JobHandle], Awaitable[str]]


class JobBook:
    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock
        self._watchers: dict[str, set[asyncio.Queue[JobRecord]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._resumable: set[str] = set()

    def fail_interrupted(
        self,
        settled_later: Collection[str] = (),
        concluded: Mapping[str, tuple[JobState, str]] | None = None,
    ) -> int:
        """Jobs a previous process left running can never finish: mark them failed,
        except `settled_later`, whose work is resumed by whoever `adopt`s them, and
        `concluded` ones, whose work was done: they end as it ended (state, and the
        message or error). Returns how many were marked failed as interrupted."""
        concluded = concluded or {}
        interrupted = 0
        for job in self._store.list_jobs(limit=1_000_000, state=JobState.RUNNING):
            if job.id in settled_later:
                continue
            if job.id in concluded:
                state, text = concluded[job.id]
                if state is JobState.COMPLETED:
                    self._finish(job, state, text, "")
                else:
                    self._finish(job, state, job.message, text)
                continue
            self._finish(job, JobState.FAILED, job.message, RESTARTED)
            interrupted += 1
        return interrupted

    @contextlib.contextmanager
    def requested(self, request_id: str) -> Iterator[None]:
        """While inside, the first job started records `request_id`."""
        token = _REQUESTED_ID.set(request_id)
        try:
            yield
        finally:
            _REQUESTED_ID.reset(token)

    def for_request(self, request_id: str) -> JobRecord | None:
        """The job a request with this id started, if one did."""
        return self._store.get_job_by_request(request_id)

    def adopt(self, job_id: str) -> JobHandle:
        """A handle on a job a previous process left running, to report on and end it."""
        self._get(job_id)
        return JobHandle(self, job_id)

    def start(self, kind: str, target: str, message: str, work: Work, resumable: bool = False) -> JobRecord:
        """Run `work` as a new job. A `resumable` job whose process stops stays running
        in the store, for the next process to `adopt` (see fail_interrupted)."""
        now = self._clock()
        requested = _REQUESTED_ID.get()
        if requested is not None:
            _REQUESTED_ID.set(None)  # a second job of the same call gets an id of its own
        job = JobRecord(
            id=str(uuid.uuid4()),
            request_id=requested or "",
            kind=kind,
            target=target,
            state=JobState.RUNNING,
            progress=0,
            message=message,
            error="",
            created_at=now,
            updated_at=now,
        )
        self._store.put_job(job)
        if resumable:
            self._resumable.add(job.id)
        log.info("job %s (%s %s) started: %s", job.id, kind, target, message)
        task = asyncio.get_running_loop().create_task(self._run(job.id, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job_id: str, work: Work) -> None:
        try:
            message = await work(JobHandle(self, job_id))
        except ManagerError as error:
            self._end(job_id, JobState.FAILED, None, error.message)
        except asyncio.CancelledError:
            if job_id not in self._resumable:
                self._end(job_id, JobState.FAILED, None, STOPPED)
            raise
        except Exception as error:  # a bug must fail the job, not leave it running
            log.exception("job %s crashed", job_id)
            self._end(job_id, JobState.FAILED, None, f"internal error: {error}")
        else:
            self._end(job_id, JobState.COMPLETED, message, "")
        finally:
            self._resumable.discard(job_id)

    def _get(self, job_id: str) -> JobRecord:
        job = self._store.get_job(job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} does not exist")
        return job

    def progress(self, job_id: str, percent: int, message: str) -> None:
        job = self._get(job_id)
        if job.state is not JobState.RUNNING:
            return
        updated = replace(
            job,
            progress=max(job.progress, min(100, percent)),
            message=message,
            updated_at=self._clock(),
        )
        self._store.put_job(updated)
        self._publish(updated)

    def set_steps(self, job_id: str, steps: tuple[JobStep, ...]) -> None:
        job = self._get(job_id)
        if job.state is not JobState.RUNNING:
            return
        updated = replace(job, steps=steps, updated_at=self._clock())
        self._store.put_job(updated)
        self._publish(updated)

    def _end(self, job_id: str, state: JobState, message: str | None, error: str) -> None:
        job = self._get(job_id)
        if job.state is not JobState.RUNNING:
            return  # an adopted job ended twice: the first end stands
        self._finish(job, state, message if message is not None else job.message, error)

    def _finish(self, job: JobRecord, state: JobState, message: str, error: str) -> None:
        done = replace(
            job,
            state=change_job_state(job.id, job.state, state),
            progress=100 if state is JobState.COMPLETED else job.progress,
            message=message,
            error=error,
            updated_at=self._clock(),
        )
        self._store.put_job(done)
        if error:
            log.warning("job %s (%s %s) failed: %s", job.id, job.kind, job.target, error)
        self._publish(done)

    def _publish(self, job: JobRecord) -> None:
        for queue in self._watchers.get(job.id, ()):
            queue.put_nowait(job)

    def get(self, job_id: str) -> JobRecord:
        return self._get(job_id)

    def list(self, limit: int) -> list[JobRecord]:
        return self._store.list_jobs(limit)

    async def watch(self, job_id: str) -> AsyncIterator[JobRecord]:
        """The job now, then every change, until it is completed or failed."""
        queue: asyncio.Queue[JobRecord] = asyncio.Queue()
        # Subscribe before reading, so no change falls between the read and the wait.
        self._watchers.setdefault(job_id, set()).add(queue)
        try:
            job = self._get(job_id)
            yield job
            while job.state is JobState.RUNNING:
                job = await queue.get()
                yield job
        finally:
            watchers = self._watchers.get(job_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[job_id]

    def running_count(self) -> int:
        return len(self._store.list_jobs(limit=1_000_000, state=JobState.RUNNING))

    async def shutdown(self) -> None:
        """Cancel running work; its jobs are marked failed as the tasks unwind, except
        resumable ones, which the next process settles."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
