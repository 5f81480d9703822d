"""Failover restart: take the HA VMs of a fenced host and run them on surviving nodes.

Each step is persisted before it is acted on: the VM names the host it is taken from
(`failover_from`), then the node a restart is tried on and the lease generation it
will hold, then where it runs. A manager killed at any point finds that intent on
start and goes on: it first asks the node of the last attempt whether the VM already
runs there, so no VM is started twice, and every take-over holds a lease generation
newer than the last, so an older copy can never write again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from manager.app.claims import Claim
from manager.app.events import EventBus
from manager.app.vms import VmService
from manager.core.agent_port import AgentPort
from manager.core.errors import AlreadyExistsError, ManagerError
from manager.core.failover import RESTARTABLE_STATES, Restart, plan_restarts
from manager.core.failover_policy import recent_failovers, threshold_reached
from manager.core.inventory import build_snapshot
from manager.core.migration import newest_generation
from manager.core.model import FailedAction, HostRecord, RestartPriority, VmOperation, VmRecord
from manager.core.reconcile import record_observed
from manager.core.settings import Settings
from manager.core.states import HostState, VmState
from manager.core.store import Store

log = logging.getLogger(__name__)


class FailoverService:
    def __init__(
        self,
        store: Store,
        agents: AgentPort,
        settings: Settings,
        vms: VmService,
        bus: EventBus,
        monotonic: Callable[[], float],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        # Wall time: failover thresholds count failovers over hours, across restarts.
        self._clock = clock
        self._agents = agents
        self._settings = settings
        self._vms = vms
        self._bus = bus
        self._now = monotonic
        self._parallel = asyncio.Semaphore(settings.failover_parallelism)

    def restarting(self, vm_id: str) -> bool:
        """A restart works on this VM now."""
        return self._vms.claims.holds(vm_id, Claim.RESTART)

    def mark(self, host: HostRecord) -> list[VmRecord]:
        """Record the intent to restart the failed host's HA VMs; report the others down."""
        name = host.name
        to_restart: list[VmRecord] = []
        for vm in self._store.list_vms():
            if vm.failover_from == name:
                to_restart.append(vm)
                continue
            if vm.host != name:
                continue
            if not vm.highly_available or host.cluster is None:
                if vm.state not in (VmState.UNKNOWN, VmState.CREATING, VmState.MISSING, VmState.FAILED):
                    self._put(record_observed(vm, VmState.UNKNOWN, f"host {name} is not responding"))
                    self._bus.emit(
                        "failover", f"VM {vm.name} stays down: not highly available", name, vm.name
                    )
                continue
            if vm.state not in RESTARTABLE_STATES:
                continue
            if vm.restart_priority is RestartPriority.NONE:
                self._put(
                    record_observed(
                        vm, VmState.UNKNOWN, f"host {name} is not responding; restart priority none"
                    )
                )
                self._bus.emit("failover", f"VM {vm.name} is not restarted: priority none", name, vm.name)
                continue
            # Intent first: a manager killed from here on resumes this VM's restart.
            marked = replace(vm, failover_from=name)
            self._put(marked)
            to_restart.append(marked)
        return to_restart

    async def restart_all(self, failed_host: str, vms: list[VmRecord]) -> None:
        pending = {vm.id for vm in vms}
        # Each round either finishes a VM or records a failed attempt, so this bound is
        # only a guard against a host that keeps changing its mind.
        for _ in range(self._max_rounds()):
            current = [vm for vm_id in sorted(pending) if (vm := self._store.get_vm(vm_id)) is not None]
            current = [vm for vm in current if vm.failover_from is not None]
            for vm in list(current):
                exhausted = self._exhausted(vm)
                if len(exhausted) > self._settings.restart_attempts_other_nodes:
                    self._fail(vm, f"restart failed on {', '.join(sorted(exhausted))}")
                    current.remove(vm)
                elif (
                    vm.restart_target is None
                    and not vm.threshold_waived
                    and (why := self._over_threshold(vm))
                ):
                    self._fail(vm, why, FailedAction.THRESHOLD)
                    current.remove(vm)
            for vm in list(current):
                if vm.restart_target is None:
                    async with self._vms.lock(vm.id):
                        home_again = await self._running_at_home(vm)
                    if home_again:
                        current.remove(vm)
                        pending.discard(vm.id)
            if not current:
                return
            plan = plan_restarts(
                build_snapshot(self._store.list_hosts(), self._store.list_clusters(), self._store.list_vms()),
                current,
                self._now(),
                failed_host=failed_host,
                avoid={vm.id: self._exhausted(vm) for vm in current},
                max_vcpus_per_core=self._settings.max_vcpus_per_core,
            )
            for vm_id, why in plan.waiting:
                self._wait_for_capacity(vm_id, why)
                pending.discard(vm_id)
            for vm_id, _why in plan.skipped:
                pending.discard(vm_id)
            for group in self._by_priority(plan.restarts):
                done = await asyncio.gather(*(self._bounded_restart(r) for r in group))
                pending.difference_update(r.vm_id for r, ok in zip(group, done, strict=True) if ok)
            if not plan.restarts:
                return

    def _by_priority(self, restarts: tuple[Restart, ...]) -> list[list[Restart]]:
        """The plan's restarts cut into runs of one restart priority, in plan order."""
        groups: list[list[Restart]] = []
        last = None
        for restart in restarts:
            vm = self._store.get_vm(restart.vm_id)
            priority = vm.restart_priority if vm is not None else None
            if not groups or priority != last:
                groups.append([])
            groups[-1].append(restart)
            last = priority
        return groups

    async def _bounded_restart(self, restart: Restart) -> bool:
        async with self._parallel:
            return await self._restart(restart)

    def _over_threshold(self, vm: VmRecord) -> str | None:
        """Why the failover threshold forbids restarting `vm` now (None: it may restart)."""
        host = self._store.get_host(vm.failover_from or vm.host or "")
        cluster = self._store.get_cluster(host.cluster) if host is not None and host.cluster else None
        nodes = len(cluster.nodes) if cluster is not None else 0
        return threshold_reached(vm, nodes, self._clock())

    def _max_rounds(self) -> int:
        per_node = 1 + self._settings.restart_attempts_same_node
        return 2 + per_node * (1 + self._settings.restart_attempts_other_nodes)

    def _exhausted(self, vm: VmRecord) -> frozenset[str]:
        limit = 1 + self._settings.restart_attempts_same_node
        return frozenset(h for h, n in vm.restart_attempts if n >= limit)

    def _wait_for_capacity(self, vm_id: str, why: str) -> None:
        vm = self._store.get_vm(vm_id)
        if vm is None or vm.failover_from is None:
            return
        exhausted = self._exhausted(vm)
        if exhausted:
            self._fail(
                vm, f"restart failed on {', '.join(sorted(exhausted))} and no other node can take it: {why}"
            )
            return
        reason = f"no node can take it now: {why}"
        if vm.state is VmState.WAITING and vm.reason == reason:
            return
        self._put(record_observed(vm, VmState.WAITING, reason))
        self._bus.emit("failover", f"VM {vm.name} is waiting: {reason}", vm.host or "", vm.name)

    def _fail(self, vm: VmRecord, why: str, action: FailedAction = FailedAction.FAILOVER) -> None:
        failed = replace(
            record_observed(vm, VmState.FAILED, why),
            failover_from=None,
            restart_target=None,
            failed_action=action,
            threshold_waived=False,
        )
        self._put(failed)
        self._bus.emit("failover", f"VM {vm.name} failed: {why}", vm.host or "", vm.name)

    def _put(self, vm: VmRecord) -> None:
        self._vms.record(vm)

    async def _restart(self, restart: Restart) -> bool:
        """Take the VM over on the chosen node and start it; False if this attempt failed."""
        self._vms.claims.claim(restart.vm_id, Claim.RESTART)
        try:
            async with self._vms.lock(restart.vm_id):
                return await self._restart_locked(restart)
        finally:
            self._vms.claims.release(restart.vm_id, Claim.RESTART)

    async def _restart_locked(self, restart: Restart) -> bool:
        vm = self._store.get_vm(restart.vm_id)
        if vm is None or vm.failover_from is None:
            return True  # deleted, or another pass finished it
        if vm.restart_target is not None and await self._already_there(vm):
            return True
        target = self._store.get_host(restart.host)
        if target is None or target.state is not HostState.OK or not target.address:
            return False
        # A copy an earlier attempt left on another node is let go only once this node
        # holds the newer lease: before that, that copy may hold the current lease, and
        # deleting it there would delete the VM's files.
        earlier = vm.restart_target if vm.restart_target not in (None, target.name) else None
        # Newer than what a migration of the VM under way reserved: its destination may
        # hold that generation already.
        migration = self._store.get_migration(vm.migration_id) if vm.migration_id else None
        generation = newest_generation(vm, migration) + 1
        attempts = dict(vm.restart_attempts)
        attempts[target.name] = attempts.get(target.name, 0) + 1
        vm = replace(
            vm,
            restart_target=target.name,
            lease_generation=generation,
            restart_attempts=tuple(attempts.items()),
        )
        self._put(vm)
        self._bus.emit(
            "failover",
            f"restarting VM {vm.name} on host {target.name} (lease generation {generation})",
            target.name,
            vm.name,
        )
        moved = replace(vm, host=target.name, storage=restart.storage or vm.storage)
        try:
            try:
                reported = await self._agents.create_vm(
                    target.name, target.address, moved, take_over=True, lease_generation=generation
                )
            except AlreadyExistsError:
                reported = await self._agents.get_vm(target.name, target.address, vm.id)
            vm = record_observed(replace(moved, lease_generation=generation), reported.state, reported.reason)
            self._put(vm)
            if earlier is not None:
                await self._discard_copy(vm, earlier)
            if reported.state is not VmState.RUNNING:
                reported = await self._agents.operate_vm(
                    target.name, target.address, vm.id, VmOperation.START
                )
        except ManagerError as error:
            self._bus.emit(
                "failover",
                f"restart of VM {vm.name} on host {target.name} failed: {error.message}",
                target.name,
                vm.name,
            )
            return False
        self._finish(vm, reported.state, reported.reason, target.name)
        return True

    async def _already_there(self, vm: VmRecord) -> bool:
        """After a manager restart: did the last attempt get the VM running already?"""
        target = self._store.get_host(vm.restart_target or "")
        if target is None or not target.address:
            return False
        try:
            reported = await self._agents.get_vm(target.name, target.address, vm.id)
        except ManagerError:
            return False
        if reported.state is VmState.RUNNING and reported.lease_generation >= vm.lease_generation:
            self._finish(replace(vm, host=target.name), reported.state, reported.reason, target.name)
            return True
        return False

    async def _running_at_home(self, vm: VmRecord) -> bool:
        """A VM that waited while its failed host came back may run there again: the
        host's own automatic start brought it up, still holding the current lease."""
        home = self._store.get_host(vm.host or "")
        if home is None or home.state is not HostState.OK or not home.address:
            return False
        try:
            reported = await self._agents.get_vm(home.name, home.address, vm.id)
        except ManagerError:
            return False
        if reported.state is not VmState.RUNNING or reported.lease_generation < vm.lease_generation:
            return False
        back = replace(
            record_observed(vm, reported.state, reported.reason),
            failover_from=None,
            restart_target=None,
            restart_attempts=(),
        )
        self._put(back)
        self._bus.emit("failover", f"VM {vm.name} runs again on its own host {home.name}", home.name, vm.name)
        return True

    async def _discard_copy(self, vm: VmRecord, host_name: str) -> None:
        """A copy left by a failed attempt on another node, fenced by now: make that node
        forget it (its files stay with the new owner), best effort."""
        host = self._store.get_host(host_name)
        if host is None or not host.address:
            return
        try:
            await self._agents.delete_vm(host_name, host.address, vm.id)
        except ManagerError as error:
            log.info("could not remove the copy of VM %s on host %s: %s", vm.name, host_name, error.message)

    def _finish(self, vm: VmRecord, state: VmState, reason: str, target: str) -> None:
        now = self._clock()
        done = replace(
            record_observed(vm, state, reason),
            failover_count=vm.failover_count + 1,
            failover_times=(*recent_failovers(vm, now), now),
            threshold_waived=False,
            failover_from=None,
            restart_target=None,
            restart_attempts=(),
        )
        self._put(done)
        self._bus.emit(
            "failover",
            f"VM {vm.name} is {state.value} on host {target} (failover {done.failover_count})",
            target,
            vm.name,
        )
