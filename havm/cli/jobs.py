"""Waiting for a manager job: stream WatchJob to its end, with a progress bar for people.

Every change the manager makes is a job. Mutating commands start one, then wait here;
the bar goes to stderr, and only when stderr is a terminal and the output is a table,
so scripts and `-o json` get clean output.
"""

from __future__ import annotations

import sys
from contextlib import closing

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

from havm.cli import render
from havm.cli.client import ManagerClient
from havm.cli.errors import JobFailed
from havm.cli.options import OutputFormat
from havm.v1 import manager_pb2

FINISHED = (manager_pb2.JOB_STATE_COMPLETED, manager_pb2.JOB_STATE_FAILED)


def wait_for_job(client: ManagerClient, job: manager_pb2.Job, output: OutputFormat) -> manager_pb2.Job:
    """The job once it is completed or failed (failed jobs are returned, not raised)."""
    if job.state in FINISHED:
        return job
    if output is OutputFormat.table and sys.stderr.isatty():
        return _watch_with_bar(client, job)
    return _watch(client, job, None, None)


def _watch_with_bar(client: ManagerClient, job: manager_pb2.Job) -> manager_pb2.Job:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        line = bar.add_task(_describe(job), total=100, completed=job.progress)
        return _watch(client, job, bar, line)


def _watch(
    client: ManagerClient,
    job: manager_pb2.Job,
    bar: Progress | None,
    line: TaskID | None,
) -> manager_pb2.Job:
    last = job
    # Closed on the way out whatever ends the loop: a Ctrl-C while the bar is drawn
    # would otherwise leave the stream open until the channel's close waits on it.
    with closing(client.watch_job(job.id)) as updates:
        for update in updates:
            last = update
            if bar is not None and line is not None:
                bar.update(line, completed=update.progress, description=_describe(update))
            if update.state in FINISHED:
                return update
    # The stream ended without a final state (the manager restarted, say): ask once.
    final = client.get_job(job.id)
    if final.state in FINISHED:
        return final
    return last


def _describe(job: manager_pb2.Job) -> str:
    return job.message or f"{job.kind} {job.target}".strip()


def finish(job: manager_pb2.Job, output: OutputFormat, done_line: str | None) -> None:
    """Report a finished job: JSON or a one-line result; a failed job raises JobFailed."""
    failed = job.state == manager_pb2.JOB_STATE_FAILED
    if output is OutputFormat.json:
        render.print_json(render.job_dict(job))
    elif not failed and done_line:
        print(done_line)
    if failed:
        raise JobFailed(job.error or f"job {job.id} ({job.kind} {job.target}) failed")
    if job.state not in FINISHED:
        raise JobFailed(
            f"job {job.id} ({job.kind} {job.target}) has not finished; see `havm job watch {job.id}`"
        )
