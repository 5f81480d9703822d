"""`vm repair`: the way out of `failed`, as VMM's Repair action offers it (Retry, Undo, Ignore).

A failed VM keeps its failure and its reason across refreshes, host loss and manager
restarts (see core.reconcile.keeps_failure); only a repair (or a copy that runs
again with the current lease) ends it. Every repair works while the VM's host is
down: retrying a failover hands the VM back to the failover service, undo records
the VM stopped where its lease is, ignore records what the agents say (nothing, so
`unknown`, when its host does not answer).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from manager.app.jobs import JobBook, JobHandle
from manager.app.refresh import RefreshService
from manager.app.vms import VmService
from manager.core.agent_port import AgentPort
from manager.core.config_status import ConfigStatus
from manager.core.errors import ManagerError, NotFoundError
from manager.core.model import JobRecord, VmOperation, VmRecord
from manager.core.reconcile import record_observed
from manager.core.repair import RepairAction, RetryKind, check_repairable, repairs_failure, retry_kind
from manager.core.settings import Settings
from manager.core.states import HostState, VmState
from manager.core.store import Store

log = logging.getLogger(__name__)


class RepairService:
    def __init__(
        self,
        store: Store,
        jobs: JobBook,
        vms: VmService,
        agents: AgentPort,
        settings: Settings,
        refresher: RefreshService,
        accept_configuration: Callable[[str], VmRecord | None],
    ) -> None:
        self._store = store
        self._refresher = refresher
        # Repair's Ignore for a configuration: the judging store layer's `accept`.
        self._accept_configuration = accept_configuration
        self._jobs = jobs
        self._vms = vms
        self._agents = agents
        self._settings = settings
        # Undos recorded while the VM's host was down: its copy is turned off when the
        # host answers again (its agent may start it on its own on return).
        self._watches: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        for task in list(self._watches):
            task.cancel()
        await asyncio.gather(*self._watches, return_exceptions=True)

    def repair(self, name: str, action: RepairAction) -> tuple[JobRecord, VmRecord]:
        vm = self._store.get_vm_by_name(name)
        if vm is None:
            raise NotFoundError(f"VM {name} does not exist")
        if not repairs_failure(vm, action):
            job = self._jobs.start(
                "repair_vm",
                vm.name,
                f"Repairing the cluster configuration of VM {vm.name} ({action.value})",
                lambda handle: self._repair_configuration(handle, vm.id, action),
            )
            return job, vm
        host = self._store.get_host(vm.host or "")
        if action is RepairAction.RETRY and retry_kind(vm, host.state if host else None) is RetryKind.START:
            # An operator's start, run again: an ordinary start job on its host.
            return self._vms.operate(name, VmOperation.START), vm
        job = self._jobs.start(
            "repair_vm",
            vm.name,
            f"Repairing VM {vm.name} ({action.value})",
            lambda handle: self._work(handle, vm.id, action),
        )
        return job, vm

    async def _work(self, job: JobHandle, vm_id: str, action: RepairAction) -> str:
        async with self._vms.lock(vm_id):
            vm = self._store.get_vm(vm_id)
            if vm is None:
                raise NotFoundError("the VM was deleted before it could be repaired")
            check_repairable(vm)
            if action is RepairAction.RETRY:
                return self._retry_failover(vm)
            if action is RepairAction.UNDO:
                return await self._undo(job, vm)
            return await self._ignore(job, vm)

    async def _repair_configuration(self, job: JobHandle, vm_id: str, action: RepairAction) -> str:
        """Refresh: ask the nodes of the VM's cluster again (whether a network is common
        depends on every node) and judge anew. Ignore: accept the reasons standing now."""
        vm = self._store.get_vm(vm_id)
        if vm is None:
            raise NotFoundError("the VM was deleted before it could be repaired")
        if action is RepairAction.REFRESH:
            hosts = self._hosts_around(vm)
            job.progress(30, f"Refreshing {', '.join(hosts)}")
            refreshed = await self._refresher.refresh(hosts)
            silent = [r for r in refreshed if not r.ok]
            vm = self._store.get_vm(vm_id)
            if vm is None:
                raise NotFoundError("the VM was deleted while its hosts were refreshed")
            note = "".join(f"; host {r.host} did not answer ({r.reason})" for r in silent)
            if vm.status is ConfigStatus.OK:
                return f"VM {vm.name}: its cluster configuration is supported{note}"
            causes = "; ".join(r.detail for r in vm.status_reasons if r not in vm.ignored_reasons)
            return f"VM {vm.name} is still in an unsupported cluster configuration: {causes}{note}"
        async with self._vms.lock(vm_id):
            current = self._accept_configuration(vm_id)
            if current is None:
                raise NotFoundError("the VM was deleted before it could be repaired")
        causes = ", ".join(r.cause.value for r in current.ignored_reasons)
        return f"VM {current.name}: its cluster configuration is accepted as it is (ignored: {causes})"

    def _hosts_around(self, vm: VmRecord) -> list[str]:
        host = self._store.get_host(vm.host or "")
        if host is None:
            return []
        cluster = self._store.get_cluster(host.cluster or "")
        return list(cluster.nodes) if cluster is not None else [host.name]

    def _retry_failover(self, vm: VmRecord) -> str:
        origin = vm.host or ""
        # The attempts start afresh and the threshold lets this restart through: the
        # operator decided to try again.
        waiting = replace(
            record_observed(vm, VmState.WAITING, "repair: its failover is tried again"),
            failover_from=origin,
            restart_target=None,
            restart_attempts=(),
            threshold_waived=True,
        )
        self._vms.record(waiting)
        return (
            f"VM {vm.name} is waiting for its failover to be tried again "
            f"(attempts reset, the threshold waived once); `havm vm show {vm.name}` follows it"
        )

    async def _answering(self, vm: VmRecord) -> tuple[str, str] | None:
        """(host, address) when the VM's host is in service and answers; None otherwise."""
        host = self._store.get_host(vm.host or "")
        if host is None or not host.address or host.state is not HostState.OK:
            return None
        return host.name, host.address

    async def _undo(self, job: JobHandle, vm: VmRecord) -> str:
        where = await self._answering(vm)
        note = f"its host {vm.host} does not answer; recorded stopped there"
        if where is not None:
            host, address = where
            job.progress(40, f"Asking host {host} to make sure VM {vm.name} does not run")
            try:
                reported = await self._agents.get_vm(host, address, vm.id)
                if reported.state in (VmState.RUNNING, VmState.PAUSED, VmState.STARTING):
                    await self._agents.operate_vm(host, address, vm.id, VmOperation.TURN_OFF)
                note = f"stopped on host {host}"
            except ManagerError as error:
                note = f"host {host} could not be asked ({error.message}); recorded stopped there"
        undone = replace(
            record_observed(vm, VmState.STOPPED, "repaired: back to stopped"),
            failover_from=None,
            restart_target=None,
            restart_attempts=(),
        )
        self._vms.record(undone)
        if where is None:
            task = asyncio.get_running_loop().create_task(self._stop_on_return(vm.id))
            self._watches.add(task)
            task.add_done_callback(self._watches.discard)
            note += "; its copy is turned off when the host answers again"
        return f"VM {vm.name} is back to stopped: {note}"

    async def _stop_on_return(self, vm_id: str) -> None:
        """Wait for the VM's host to be in service again, then make sure its copy is off."""
        while True:
            await asyncio.sleep(self._settings.detector_tick_s * 5)
            vm = self._store.get_vm(vm_id)
            if vm is None or vm.state is not VmState.STOPPED and vm.state is not VmState.RUNNING:
                return  # deleted, or an operator took it elsewhere meanwhile
            where = await self._answering(vm)
            if where is None:
                continue
            host, address = where
            async with self._vms.lock(vm_id):
                try:
                    reported = await self._agents.get_vm(host, address, vm_id)
                    if reported.state in (VmState.RUNNING, VmState.PAUSED, VmState.STARTING):
                        log.info("VM %s was undone to stopped: turning off its copy on %s", vm.name, host)
                        reported = await self._agents.operate_vm(host, address, vm_id, VmOperation.TURN_OFF)
                except ManagerError as error:
                    log.warning("could not turn off VM %s on host %s: %s", vm.name, host, error.message)
                    continue
                current = self._store.get_vm(vm_id)
                if current is not None:
                    self._vms.record(record_observed(current, reported.state, "repaired: back to stopped"))
            return

    async def _ignore(self, job: JobHandle, vm: VmRecord) -> str:
        where = await self._answering(vm)
        state, reason = VmState.UNKNOWN, f"repaired (ignore): its host {vm.host} does not answer"
        if where is not None:
            host, address = where
            job.progress(40, f"Asking host {host} how VM {vm.name} is")
            try:
                reported = await self._agents.get_vm(host, address, vm.id)
                state, reason = reported.state, reported.reason or "repaired (ignore): as its host reports"
            except NotFoundError:
                state, reason = VmState.MISSING, f"repaired (ignore): host {host} does not have it"
            except ManagerError as error:
                reason = f"repaired (ignore): host {host} could not be asked: {error.message}"
        accepted = replace(
            record_observed(replace(vm, failed_action=None), state, reason),
            failover_from=None,
            restart_target=None,
            restart_attempts=(),
        )
        self._vms.record(accepted)
        return f"VM {vm.name} is {accepted.state.value}, as its host reports"
