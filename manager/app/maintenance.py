"""Maintenance mode as a job: plan purely, act through the migration and VM services,
conclude.

Starting maintenance checks the host at once (it must be `ok`; `live` needs a profile
that live-migrates), then the job plans the steps (`core.maintenance`), runs them (at
most the migration policy's per-host limit of live migrations at a time, because every
one of them leaves this host) and records each VM's outcome on the job as it goes. The
first failure stops new steps from starting; those under way finish. The host enters
`maintenance` only if every step succeeded; nothing is moved back on failure, as in
VMM. VMs placed on the host while it drained are planned in a further round.
Stopping maintenance asks the host for its inventory and makes it `ok` again if it
answers; nothing moves back and saved VMs stay saved.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from manager.app.capacity import CapacityService
from manager.app.jobs import JobBook, JobHandle
from manager.app.migrations import MigrationService
from manager.app.refresh import RefreshService
from manager.app.vms import VmService
from manager.core.errors import FailedPreconditionError, ManagerError, NotFoundError, UnavailableError
from manager.core.inventory import build_snapshot, set_host_state
from manager.core.maintenance import (
    MaintenanceMode,
    MaintenanceStep,
    StepAction,
    check_can_start,
    check_can_stop,
    default_mode,
    plan_maintenance,
)
from manager.core.model import HostRecord, JobRecord, JobStep, JobStepOutcome, VmOperation
from manager.core.settings import Settings
from manager.core.states import HostState, JobState
from manager.core.store import Store

log = logging.getLogger(__name__)

# Rounds of planning before giving up on a host that VMs keep landing on.
_MAX_ROUNDS = 3


class _Steps:
    """The job's per-VM outcomes, reported on every change."""

    def __init__(self, job: JobHandle) -> None:
        self._job = job
        self._steps: dict[str, JobStep] = {}

    def add(self, step: MaintenanceStep) -> None:
        self._steps[step.vm_name] = JobStep(step.vm_name, JobStepOutcome.PENDING, step.target)
        self._report()

    def set(self, vm: str, outcome: JobStepOutcome, detail: str = "") -> None:
        self._steps[vm] = replace(self._steps[vm], outcome=outcome, detail=detail)
        self._report()

    def outcome(self, vm: str) -> JobStepOutcome:
        return self._steps[vm].outcome

    def count(self, *outcomes: JobStepOutcome) -> int:
        return sum(1 for s in self._steps.values() if s.outcome in outcomes)

    def _report(self) -> None:
        steps = tuple(self._steps.values())
        done = sum(1 for s in steps if s.outcome not in (JobStepOutcome.PENDING, JobStepOutcome.RUNNING))
        self._job.steps(steps)
        if steps:
            self._job.progress(5 + 90 * done // len(steps), f"{done} of {len(steps)} VM(s) done")


class MaintenanceService:
    def __init__(
        self,
        store: Store,
        jobs: JobBook,
        vms: VmService,
        migrations: MigrationService,
        refresher: RefreshService,
        capacity: CapacityService,
        settings: Settings,
        live_limit: Callable[[], int],
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._vms = vms
        self._migrations = migrations
        self._refresher = refresher
        self._capacity = capacity
        self._settings = settings
        # How many live migrations may leave the host at once (the migration policy).
        self._live_limit = live_limit
        self._busy: set[str] = set()

    def _host(self, name: str) -> HostRecord:
        host = self._store.get_host(name)
        if host is None:
            raise NotFoundError(f"host {name} does not exist")
        return host

    def _guard(self, name: str) -> None:
        if name in self._busy:
            raise FailedPreconditionError(f"host {name} is entering or leaving maintenance mode already")

    # --- start ---------------------------------------------------------------------

    def start(self, name: str, mode: MaintenanceMode | None) -> JobRecord:
        host = self._host(name)
        self._guard(name)
        chosen = mode or default_mode(host, self._settings.level)
        check_can_start(host, chosen, self._settings.level)
        self._busy.add(name)
        try:
            return self._jobs.start(
                "start_maintenance",
                name,
                f"Putting host {name} in maintenance mode ({chosen.value})",
                lambda job: self._start_work(job, name, chosen),
            )
        except BaseException:
            self._busy.discard(name)
            raise

    async def _start_work(self, job: JobHandle, name: str, mode: MaintenanceMode) -> str:
        try:
            steps = _Steps(job)
            for _ in range(_MAX_ROUNDS):
                host = self._host(name)
                check_can_start(host, mode, self._settings.level)
                planned = self._plan(host, mode)
                if not planned:
                    break
                for step in planned:
                    steps.add(step)
                await self._run(planned, steps, name)
            else:
                raise FailedPreconditionError(
                    f"host {name} did not enter maintenance mode: "
                    "VMs kept being placed on it while it drained"
                )
            host = self._host(name)
            check_can_start(host, mode, self._settings.level)
            self._store.put_host(
                set_host_state(host, HostState.MAINTENANCE, f"maintenance mode ({mode.value})")
            )
            self._capacity.changed(host.cluster)
            moved = steps.count(JobStepOutcome.LIVE_MIGRATED)
            saved = steps.count(JobStepOutcome.SAVED)
            return f"Host {name} is in maintenance mode: {moved} VM(s) live-migrated, {saved} saved"
        finally:
            self._busy.discard(name)

    def _plan(self, host: HostRecord, mode: MaintenanceMode) -> tuple[MaintenanceStep, ...]:
        vms = self._store.list_vms()
        snapshot = build_snapshot(self._store.list_hosts(), self._store.list_clusters(), vms)
        planned, stuck = plan_maintenance(
            host, vms, mode, snapshot, max_vcpus_per_core=self._settings.max_vcpus_per_core
        )
        if stuck:
            names = "; ".join(f"VM {vm}: {why}" for vm, why in stuck)
            raise FailedPreconditionError(
                f"host {host.name} did not enter maintenance mode: no other node can take "
                f"{len(stuck)} highly available VM(s), so nothing was moved ({names})"
            )
        return planned

    async def _run(self, planned: tuple[MaintenanceStep, ...], steps: _Steps, host: str) -> None:
        slots = asyncio.Semaphore(max(1, self._live_limit()))
        failures: list[str] = []

        async def one(step: MaintenanceStep) -> None:
            if failures:
                steps.set(step.vm_name, JobStepOutcome.NOT_ATTEMPTED, "an earlier step failed")
                return
            steps.set(step.vm_name, JobStepOutcome.RUNNING)
            try:
                if step.action is StepAction.LIVE_MIGRATE:
                    await self._live_migrate(step)
                    steps.set(step.vm_name, JobStepOutcome.LIVE_MIGRATED, f"now on {step.target}")
                else:
                    await self._save(step)
                    steps.set(step.vm_name, JobStepOutcome.SAVED, f"saved on {host}")
            except ManagerError as error:
                verb = f"live migration to {step.target}" if step.target else "save"
                failures.append(f"{verb} of VM {step.vm_name} failed: {error.message}")
                steps.set(step.vm_name, JobStepOutcome.FAILED, error.message)

        async def bounded(step: MaintenanceStep) -> None:
            if step.action is StepAction.LIVE_MIGRATE:
                async with slots:
                    await one(step)
            else:
                await one(step)

        await asyncio.gather(*(bounded(step) for step in planned))
        if failures:
            moved = steps.count(JobStepOutcome.LIVE_MIGRATED)
            stay = f"; the {moved} VM(s) already moved stay where they went" if moved else ""
            raise FailedPreconditionError(
                f"host {host} did not enter maintenance mode: {'; '.join(failures)}{stay}"
            )

    async def _follow(self, job: JobRecord) -> JobRecord:
        async for update in self._jobs.watch(job.id):
            job = update
        return job

    async def _live_migrate(self, step: MaintenanceStep) -> None:
        # Live only: a VM that cannot converge must fail the step, not be saved quietly.
        job, _ = await self._migrations.migrate(step.vm_name, step.target, quick=False, no_converge="fail")
        done = await self._follow(job)
        if done.state is not JobState.COMPLETED:
            raise FailedPreconditionError(done.error or "the migration failed")

    async def _save(self, step: MaintenanceStep) -> None:
        job = self._vms.operate(step.vm_name, VmOperation.SAVE)
        done = await self._follow(job)
        if done.state is not JobState.COMPLETED:
            raise FailedPreconditionError(done.error or "the save failed")

    # --- stop ----------------------------------------------------------------------

    def stop(self, name: str) -> JobRecord:
        host = self._host(name)
        self._guard(name)
        check_can_stop(host)
        self._busy.add(name)
        try:
            return self._jobs.start(
                "stop_maintenance",
                name,
                f"Taking host {name} out of maintenance mode",
                lambda job: self._stop_work(job, name),
            )
        except BaseException:
            self._busy.discard(name)
            raise

    async def _stop_work(self, job: JobHandle, name: str) -> str:
        try:
            job.progress(20, f"Asking host {name} for its inventory")
            [result] = await self._refresher.refresh([name])
            host = self._host(name)
            check_can_stop(host)
            if not result.ok:
                self._store.put_host(set_host_state(host, HostState.NOT_RESPONDING, result.reason))
                self._capacity.changed(host.cluster)
                raise UnavailableError(
                    f"host {name} left maintenance mode but does not answer: {result.reason}"
                )
            self._store.put_host(set_host_state(host, HostState.OK, ""))
            self._capacity.changed(host.cluster)
            return f"Host {name} is ok again; nothing moved back, saved VMs stay saved"
        finally:
            self._busy.discard(name)
