"""Graceful host shutdown as a job: plan purely, move the VMs, tell the agent to leave.

The host goes `stopping` at once, so nothing new is placed on it while it drains.
The plan (`core.shutdown`) says what each VM does; the steps run side by side (live
migrations queue in the migration service under its per-host limit). If any step
fails the host is `ok` again and the job fails naming the VM; nothing moves back.
Otherwise the agent is told to leave: it shuts down what is left, announces
`stopped` on the broker and ends its process; the host is `stopped` until it is
started again, when it rejoins as `ok` like any host that answers.
"""

from __future__ import annotations

import asyncio
import logging

from manager.app.capacity import CapacityService
from manager.app.jobs import JobBook, JobHandle
from manager.app.migrations import MigrationService
from manager.app.vms import VmService
from manager.core.agent_port import AgentPort
from manager.core.errors import FailedPreconditionError, IllegalTransitionError, ManagerError, NotFoundError
from manager.core.inventory import build_snapshot, set_host_state
from manager.core.migration import moves_live
from manager.core.model import HostRecord, JobRecord, JobStep, JobStepOutcome, VmOperation
from manager.core.settings import Settings
from manager.core.shutdown import ShutdownAction, ShutdownStep, StepKind, check_can_shut_down, plan_shutdown
from manager.core.states import HostState, JobState
from manager.core.store import Store

log = logging.getLogger(__name__)

_OUTCOMES = {
    StepKind.LIVE_MIGRATE: JobStepOutcome.LIVE_MIGRATED,
    StepKind.QUICK_MIGRATE: JobStepOutcome.QUICK_MIGRATED,
    StepKind.SHUT_DOWN_AND_MOVE: JobStepOutcome.RESTARTED,
    StepKind.SHUT_DOWN: JobStepOutcome.SHUT_DOWN,
    StepKind.TURN_OFF: JobStepOutcome.SHUT_DOWN,
}


class ShutdownService:
    def __init__(
        self,
        store: Store,
        jobs: JobBook,
        vms: VmService,
        migrations: MigrationService,
        agents: AgentPort,
        capacity: CapacityService,
        settings: Settings,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._vms = vms
        self._migrations = migrations
        self._agents = agents
        self._capacity = capacity
        self._settings = settings

    def _host(self, name: str) -> HostRecord:
        host = self._store.get_host(name)
        if host is None:
            raise NotFoundError(f"host {name} does not exist")
        return host

    def shutdown(self, name: str, action: ShutdownAction) -> JobRecord:
        host = self._host(name)
        check_can_shut_down(host)
        steps = self._plan(host, action)
        self._set(host, HostState.STOPPING, f"shutting down ({action.value})")
        try:
            return self._jobs.start(
                "shutdown_host",
                name,
                f"Shutting down host {name} ({action.value})",
                lambda job: self._work(job, name, action, steps),
            )
        except BaseException:
            self._set(self._host(name), HostState.OK, "")
            raise

    def _plan(self, host: HostRecord, action: ShutdownAction) -> tuple[ShutdownStep, ...]:
        vms = self._store.list_vms()
        hosts = self._store.list_hosts()
        snapshot = build_snapshot(hosts, self._store.list_clusters(), vms)
        steps, stuck = plan_shutdown(
            host,
            vms,
            action,
            snapshot,
            max_vcpus_per_core=self._settings.max_vcpus_per_core,
            live_hosts={h.name for h in hosts if moves_live(h, self._settings.level)},
        )
        if stuck:
            names = "; ".join(f"VM {vm}: {why}" for vm, why in stuck)
            raise FailedPreconditionError(f"host {host.name} cannot shut down, nothing was moved: {names}")
        return steps

    def _set(self, host: HostRecord, state: HostState, reason: str) -> None:
        try:
            self._store.put_host(set_host_state(host, state, reason))
        except IllegalTransitionError as error:  # it failed meanwhile: the detector has it
            log.warning("host %s: %s", host.name, error.message)
        self._capacity.changed(host.cluster)

    async def _work(
        self, job: JobHandle, name: str, action: ShutdownAction, steps: tuple[ShutdownStep, ...]
    ) -> str:
        try:
            return await self._drain_and_leave(job, name, action, steps)
        except BaseException:
            # Whatever stopped the job, the host must not stay `stopping` for good.
            host = self._store.get_host(name)
            if host is not None and host.state is HostState.STOPPING:
                self._set(host, HostState.OK, "")
            raise

    async def _drain_and_leave(
        self, job: JobHandle, name: str, action: ShutdownAction, steps: tuple[ShutdownStep, ...]
    ) -> str:
        outcomes = {s.vm_name: JobStep(s.vm_name, JobStepOutcome.PENDING, s.target) for s in steps}
        failures: list[str] = []

        def report() -> None:
            done = sum(1 for s in outcomes.values() if s.outcome is not JobStepOutcome.PENDING)
            job.steps(tuple(outcomes.values()))
            job.progress(5 + 85 * done // max(len(outcomes), 1), f"{done} of {len(outcomes)} VM(s) done")

        async def one(step: ShutdownStep) -> None:
            try:
                await self._run(step)
                detail = f"now on {step.target}" if step.target else f"stopped on {name}"
                outcomes[step.vm_name] = JobStep(step.vm_name, _OUTCOMES[step.kind], step.target, detail)
            except ManagerError as error:
                failures.append(f"VM {step.vm_name}: {error.message}")
                outcomes[step.vm_name] = JobStep(
                    step.vm_name, JobStepOutcome.FAILED, step.target, error.message
                )
            report()

        report()
        await asyncio.gather(*(one(step) for step in steps))
        if failures:
            raise FailedPreconditionError(
                f"host {name} did not shut down: {'; '.join(failures)}; "
                "VMs already moved stay where they went"
            )
        host = self._host(name)
        job.progress(92, f"Telling host {name} to leave")
        try:
            await self._agents.shutdown_host(
                name, host.address or "", f"shut down by an operator ({action.value})"
            )
        except ManagerError as error:
            # Its VMs are gone already; an agent that cannot be told is as good as down.
            log.warning("host %s did not take the shutdown: %s", name, error.message)
        self._set(self._host(name), HostState.STOPPED, f"shut down by an operator ({action.value})")
        moved = sum(1 for s in steps if s.target)
        stopped = len(steps) - moved
        return f"Host {name} is stopped: {moved} VM(s) moved to other nodes, {stopped} shut down"

    async def _follow(self, job: JobRecord) -> None:
        async for update in self._jobs.watch(job.id):
            job = update
        if job.state is not JobState.COMPLETED:
            raise FailedPreconditionError(job.error or f"{job.kind} failed")

    async def _run(self, step: ShutdownStep) -> None:
        if step.kind is StepKind.LIVE_MIGRATE:
            job, _ = await self._migrations.migrate(
                step.vm_name, step.target, quick=False, no_converge="quick"
            )
            await self._follow(job)
        elif step.kind is StepKind.QUICK_MIGRATE:
            job, _ = await self._migrations.migrate(step.vm_name, step.target, quick=True, no_converge=None)
            await self._follow(job)
        elif step.kind is StepKind.SHUT_DOWN_AND_MOVE:
            await self._follow(self._vms.operate(step.vm_name, VmOperation.SHUTDOWN))
            job, _ = await self._migrations.migrate(step.vm_name, step.target, quick=True, no_converge=None)
            await self._follow(job)
            await self._follow(self._vms.operate(step.vm_name, VmOperation.START))
        elif step.kind is StepKind.SHUT_DOWN:
            await self._follow(self._vms.operate(step.vm_name, VmOperation.SHUTDOWN))
        else:
            await self._follow(self._vms.operate(step.vm_name, VmOperation.TURN_OFF))
