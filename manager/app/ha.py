"""High availability: observe heartbeats, decide with the detector, fence and restart.

The detector (core) turns what the MQTT link hears into verdicts; this service acts on
them: it probes suspect hosts over gRPC, records host states, refreshes hosts that
fail or come back, and runs one failover per fenced host. A failover persists its
intent first (the host is `fencing`, each VM to restart names the host it is taken
from), so a manager killed mid-way resumes it on start; before acting on a VM it asks
where the VM is now, and every take-over holds a newer lease generation, so no VM
ever runs twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from manager.app.events import EventBus
from manager.app.refresh import RefreshService
from manager.app.vms import VmService
from manager.core.agent_port import AgentPort
from manager.core.detector import Action, FailureDetector, Verdict
from manager.core.errors import AlreadyExistsError, IllegalTransitionError, ManagerError
from manager.core.failover import RESTARTABLE_STATES, WAITING_PREFIX, Restart, plan_restarts
from manager.core.inventory import build_snapshot, set_host_state
from manager.core.model import RestartPriority, VmOperation, VmRecord
from manager.core.reconcile import record_observed, with_configuration
from manager.core.settings import Settings
from manager.core.states import HostState, VmState
from manager.core.store import Store

log = logging.getLogger(__name__)


class HaService:
    def __init__(
        self,
        store: Store,
        agents: AgentPort,
        settings: Settings,
        refresher: RefreshService,
        vms: VmService,
        bus: EventBus,
        monotonic: Callable[[], float],
    ) -> None:
        self._store = store
        self._agents = agents
        self._settings = settings
        self._refresher = refresher
        self._vms = vms
        self._bus = bus
        self._now = monotonic
        self.detector = FailureDetector(
            [h.name for h in store.list_hosts()],
            settings.heartbeat_interval,
            settings.heartbeat_threshold,
            monotonic(),
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._in_flight: set[str] = set()  # "probe:<host>", "refresh:<host>", "fence:<host>"
        self._restarting: set[str] = set()  # VM ids a restart works on now
        refresher.failover_vms = self.failover_vms

    # --- what the MQTT link hears ----------------------------------------------------

    def on_message(self, message: Any) -> None:
        now = self._now()
        online = getattr(message, "online", True)
        if not online:
            if self.detector.alive(message.host, now) or self.detector.boot_id(message.host):
                self._bus.emit("detector", f"host {message.host} went offline (last will)", host=message.host)
            self.detector.last_will(message.host, now)
            return
        previous = self.detector.boot_id(message.host)
        self.detector.beat(message.host, message.boot_id, now)
        if previous and message.boot_id and previous != message.boot_id:
            self._bus.emit(
                "detector", f"host {message.host} restarted (boot id {message.boot_id})", host=message.host
            )

    def on_connection(self, connected: bool) -> None:
        now = self._now()
        if connected:
            self.detector.broker_up(now)
            self._bus.emit(
                "broker",
                f"connected to the broker; hosts are judged again after {self.detector.window:g} s",
            )
        else:
            self.detector.broker_down(now)
            self._bus.emit("broker", "lost the broker: no host is judged until it is back")

    def failover_vms(self) -> set[str]:
        """VMs a failover holds: refresh must not record them from a host's report."""
        return {vm.id for vm in self._store.list_vms() if vm.failover_from is not None} | self._restarting

    # --- loops ---------------------------------------------------------------------

    def _spawn(self, key: str, work: Coroutine[Any, Any, None]) -> None:
        if key in self._in_flight:
            work.close()
            return
        self._in_flight.add(key)

        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed", key)
            finally:
                self._in_flight.discard(key)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        """Resume interrupted failovers, then judge hosts every tick until cancelled."""
        self.resume()
        next_retry = self._now() + self._settings.capacity_retry_interval
        while True:
            try:
                self.tick()
                if self._now() >= next_retry:
                    next_retry = self._now() + self._settings.capacity_retry_interval
                    self.retry_waiting()
            except Exception:  # one bad pass must not end detection
                log.exception("detector pass failed")
            await asyncio.sleep(self._settings.detector_tick)

    async def idle(self) -> None:
        """Wait until no probe, refresh or failover is running."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def resume(self) -> None:
        for host in self._store.list_hosts():
            if host.state is HostState.FENCING:
                log.warning("resuming the failover of host %s", host.name)
                self._bus.emit("failover", f"resuming the failover of host {host.name}", host=host.name)
                self._spawn(f"fence:{host.name}", self._failover(host.name))

    def tick(self) -> None:
        now = self._now()
        states = {h.name: h.state for h in self._store.list_hosts()}
        for name in states:
            self.detector.add_host(name)
        for verdict in self.detector.evaluate(states, now):
            self._act(verdict)

    def _act(self, verdict: Verdict) -> None:
        host = verdict.host
        if verdict.action is Action.SET_STATE and verdict.state is not None:
            self._set_host(host, verdict.state, verdict.reason)
        elif verdict.action is Action.PROBE:
            self._spawn(f"probe:{host}", self._probe(host))
        elif verdict.action is Action.FENCE:
            if self._set_host(host, HostState.FENCING, verdict.reason):
                self._spawn(f"fence:{host}", self._failover(host))
        elif verdict.action is Action.REFRESH:
            self._bus.emit("detector", f"host {host} is back: refreshing it", host=host)
            self._spawn(f"refresh:{host}", self._refresh_back(host))

    def _set_host(self, name: str, state: HostState, reason: str) -> bool:
        host = self._store.get_host(name)
        if host is None:
            return False
        if host.state is state:
            return True
        try:
            self._store.put_host(set_host_state(host, state, reason))
        except IllegalTransitionError as error:
            log.warning("detector verdict not applied: %s", error.message)
            return False
        self._bus.emit("detector", f"host {name} is {state.value}: {reason}", host=name)
        if state is HostState.ISOLATED:
            log.warning("host %s is isolated from the heartbeat network: %s", name, reason)
        return True

    async def _probe(self, name: str) -> None:
        host = self._store.get_host(name)
        if host is None:
            return
        answered, why = False, "no agent address"
        if host.address:
            try:
                await self._agents.probe(name, host.address, self._settings.probe_timeout)
                answered, why = True, ""
            except ManagerError as error:
                why = error.message
        current = self._store.get_host(name)
        if current is None:
            return
        self._bus.emit(
            "detector",
            f"probe of host {name} {'answered' if answered else 'failed: ' + why}",
            host=name,
        )
        for verdict in self.detector.probe_result(name, current.state, answered, why, self._now()):
            self._act(verdict)

    async def _refresh_back(self, name: str) -> None:
        await self._refresher.refresh([name])
        host = self._store.get_host(name)
        if host is not None and host.state is HostState.OK and host.cluster:
            await self._refresh_cluster(host.cluster, f"host {name} returned")

    async def _refresh_cluster(self, cluster_name: str, why: str) -> None:
        cluster = self._store.get_cluster(cluster_name)
        if cluster is None:
            return
        self._bus.emit("refresh", f"refreshing cluster {cluster_name}: {why}")
        await self._refresher.refresh(list(cluster.nodes))

    # --- failover ------------------------------------------------------------------

    async def _failover(self, name: str) -> None:
        host = self._store.get_host(name)
        if host is None:
            return
        self._bus.emit("failover", f"fencing host {name}: taking its VMs away", host=name)
        to_restart: list[VmRecord] = []
        for vm in self._store.list_vms():
            if vm.failover_from == name:
                to_restart.append(vm)
                continue
            if vm.host != name:
                continue
            if not vm.highly_available or host.cluster is None:
                if vm.state not in (VmState.UNKNOWN, VmState.CREATING, VmState.MISSING):
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
        if host.cluster:
            await self._refresh_cluster(host.cluster, f"host {name} failed")
        await self._restart_all(name, to_restart)
        self._set_host(name, HostState.FENCED, "its VMs were taken away; it rejoins once it answers again")

    def retry_waiting(self) -> None:
        """Try again VMs that wait for capacity (a node may have returned, a VM stopped)."""
        by_host: dict[str, list[VmRecord]] = {}
        for vm in self._store.list_vms():
            if vm.failover_from is not None and vm.id not in self._restarting:
                by_host.setdefault(vm.failover_from, []).append(vm)
        for name, vms in by_host.items():
            host = self._store.get_host(name)
            if host is not None and host.state is HostState.FENCING:
                continue  # its own failover task handles them
            self._spawn(f"retry:{name}", self._restart_all(name, vms))

    async def _restart_all(self, failed_host: str, vms: list[VmRecord]) -> None:
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
            for restart in plan.restarts:
                done = await self._restart(restart)
                if done:
                    pending.discard(restart.vm_id)
            if not plan.restarts:
                return

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
        reason = WAITING_PREFIX + why
        if vm.state is VmState.STOPPED and vm.reason == reason:
            return
        self._put(record_observed(vm, VmState.STOPPED, reason))
        self._bus.emit("failover", f"VM {vm.name} is {reason}", vm.host or "", vm.name)

    def _fail(self, vm: VmRecord, why: str) -> None:
        failed = replace(record_observed(vm, VmState.FAILED, why), failover_from=None, restart_target=None)
        self._put(failed)
        self._bus.emit("failover", f"VM {vm.name} failed: {why}", vm.host or "", vm.name)

    def _put(self, vm: VmRecord) -> None:
        self._vms.record(vm)

    async def _restart(self, restart: Restart) -> bool:
        """Take the VM over on the chosen node and start it; False if this attempt failed."""
        self._restarting.add(restart.vm_id)
        try:
            async with self._vms.lock(restart.vm_id):
                return await self._restart_locked(restart)
        finally:
            self._restarting.discard(restart.vm_id)

    async def _restart_locked(self, restart: Restart) -> bool:
        vm = self._store.get_vm(restart.vm_id)
        if vm is None or vm.failover_from is None:
            return True  # deleted, or another pass finished it
        if vm.restart_target is not None and await self._already_there(vm):
            return True
        target = self._store.get_host(restart.host)
        if target is None or target.state is not HostState.OK or not target.address:
            return False
        if vm.restart_target not in (None, target.name):
            await self._discard_copy(vm, vm.restart_target)
        generation = vm.lease_generation + 1
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
            vm = with_configuration(
                record_observed(replace(moved, lease_generation=generation), reported.state, reported.reason),
                target.cluster,
            )
            self._put(vm)
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

    async def _discard_copy(self, vm: VmRecord, host_name: str) -> None:
        """A copy left by a failed attempt on another node: remove it, best effort."""
        host = self._store.get_host(host_name)
        if host is None or not host.address:
            return
        try:
            await self._agents.delete_vm(host_name, host.address, vm.id)
        except ManagerError as error:
            log.info("could not remove the copy of VM %s on host %s: %s", vm.name, host_name, error.message)

    def _finish(self, vm: VmRecord, state: VmState, reason: str, target: str) -> None:
        done = replace(
            record_observed(vm, state, reason),
            failover_count=vm.failover_count + 1,
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
