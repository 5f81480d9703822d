"""Creates the manager was carrying out when it stopped, concluded from what the host has.

A create job whose process died cannot go on, but whether its VM exists is a fact its
host knows. Once the host is refreshed (which keeps a VM record the host confirms and
drops one it does not), the job ends as what happened: completed when the VM is there,
saying its state, failed when it is not. So neither a user reading the job nor a client
retrying the create with the same request id is told "failed" about a VM that exists.
"""

from __future__ import annotations

import logging

from manager.app.jobs import JobBook
from manager.app.refresh import RefreshService
from manager.core.model import VmState
from manager.core.states import JobState
from manager.core.store import Store

log = logging.getLogger(__name__)

CREATE_KIND = "create_vm"


class InterruptedCreates:
    def __init__(self, store: Store, jobs: JobBook, refresher: RefreshService) -> None:
        self._store = store
        self._jobs = jobs
        self._refresher = refresher
        self._pending: list[str] = []

    def take(self) -> set[str]:
        """The create jobs a previous process left running: settled by `conclude`, not
        failed as interrupted. Call before JobBook.fail_interrupted."""
        running = self._store.list_jobs(limit=1_000_000, state=JobState.RUNNING)
        self._pending = [job.id for job in running if job.kind == CREATE_KIND]
        return set(self._pending)

    async def conclude(self) -> None:
        for job_id in self._pending:
            try:
                await self._conclude(job_id)
            except Exception:  # one bad job must not leave the others running
                log.exception("cannot conclude the interrupted create job %s", job_id)
                self._jobs.adopt(job_id).end("the manager restarted while this job ran")
        self._pending = []

    async def _conclude(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        name = job.target
        vm = self._store.get_vm_by_name(name)
        if vm is not None and vm.host:
            await self._refresher.refresh([vm.host])
            vm = self._store.get_vm_by_name(name)
        handle = self._jobs.adopt(job_id)
        if vm is None:
            handle.end(f"the manager restarted before VM {name} was created: nothing was created")
        elif vm.state is VmState.CREATING:
            handle.end(
                f"the manager restarted while creating VM {name}, and host {vm.host} does not answer: "
                f"whether it exists shows once the host is refreshed (havm vm show {name})"
            )
        else:
            handle.end(
                None,
                f"VM {name} exists on host {vm.host} ({vm.state.value}); the manager restarted while "
                "creating it, so a start it was to make may not have happened",
            )
        log.info("interrupted create of VM %s concluded: %s", name, self._jobs.get(job_id).state.value)
