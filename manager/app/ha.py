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
from datetime import UTC, datetime
from typing import Any

from manager.app.events import EventBus
from manager.app.failover import FailoverService
from manager.app.refresh import RefreshService
from manager.app.vms import VmService
from manager.core.agent_port import AgentPort
from manager.core.detector import Action, FailureDetector, Verdict
from manager.core.errors import IllegalTransitionError, ManagerError
from manager.core.inventory import set_host_state
from manager.core.model import Event, VmRecord
from manager.core.settings import Settings
from manager.core.states import HostState, VmState
from manager.core.store import Store

log = logging.getLogger(__name__)
# How often a host's refused heartbeats or statuses are reported, in seconds.
REFUSED_REPORT_S = 10.0


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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
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
            settings.heartbeat_interval_s,
            settings.heartbeat_threshold,
            monotonic(),
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._in_flight: set[str] = set()  # "probe:<host>", "refresh:<host>", "fence:<host>"
        self.failover = FailoverService(store, agents, settings, vms, bus, monotonic, clock)
        # Set when a node returns or a VM stops or goes: VMs waiting for capacity are
        # retried at the next tick rather than at the next periodic retry.
        self._capacity_changed = False
        self._refreshed_at: dict[str, float] = {}
        self._refused_reported: dict[str, float] = {}
        bus.add_publisher(self._watch_capacity)

    # --- what the MQTT link hears ----------------------------------------------------

    def on_message(self, message: Any) -> None:
        now = self._now()
        online = getattr(message, "online", True)
        if getattr(message, "stopped", False):
            self.detector.last_will(message.host, now)
            self._left(message.host)
            return
        if not online:
            if self.detector.alive(message.host, now) or self.detector.boot_id(message.host):
                self._bus.emit("detector", f"host {message.host} went offline (last will)", host=message.host)
            self.detector.last_will(message.host, now)
            # A last will is as sure as a verdict gets: judge now, not at the next tick.
            self.tick()
            return
        previous = self.detector.boot_id(message.host)
        self.detector.beat(message.host, message.boot_id, now)
        if previous and message.boot_id and previous != message.boot_id:
            self._bus.emit(
                "detector", f"host {message.host} restarted (boot id {message.boot_id})", host=message.host
            )

    def on_refused(self, host: str, why: str) -> None:
        """A heartbeat or status the broker carried that its host did not sign, or a replay:
        it changes no verdict. A `security` event says so, at most once per host every
        REFUSED_REPORT_S (a forger may publish many)."""
        now = self._now()
        last = self._refused_reported.get(host)
        if last is not None and now - last < REFUSED_REPORT_S:
            return
        self._refused_reported[host] = now
        log.warning("ignored %s", why)
        self._bus.emit("security", f"ignored {why}", host=host)

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

    def _left(self, name: str) -> None:
        """The agent announced it shut down on purpose: no failure to detect, no fencing
        window to wait for. Its HA VMs that ran restart elsewhere at once (each take-over
        holds a newer lease, so a copy that did not stop could not write)."""
        host = self._store.get_host(name)
        if host is None or host.state in (HostState.STOPPED, HostState.FENCING):
            return
        shut_down_by_manager = host.state is HostState.STOPPING
        if not self._set_host(name, HostState.STOPPED, "its agent announced it shut down"):
            return
        if shut_down_by_manager or host.cluster is None:
            return  # the shutdown job moved its VMs first
        self._bus.emit("failover", f"host {name} shut down: restarting its VMs elsewhere now", host=name)
        self._spawn(f"fence:{name}", self._recover_left(name))

    async def _recover_left(self, name: str) -> None:
        host = self._store.get_host(name)
        if host is None:
            return
        await self.failover.restart_all(name, self.failover.mark(host))

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
        next_retry = self._now() + self._settings.capacity_retry_interval_s
        while True:
            try:
                self.tick()
                if self._capacity_changed or self._now() >= next_retry:
                    self._capacity_changed = False
                    next_retry = self._now() + self._settings.capacity_retry_interval_s
                    self.retry_waiting()
            except Exception:  # one bad pass must not end detection
                log.exception("detector pass failed")
            await asyncio.sleep(self._settings.detector_tick_s)

    def _watch_capacity(self, event: Event) -> None:
        if event.kind == "host_state" and event.new_state == HostState.OK.value:
            self._capacity_changed = True
        elif event.kind == "vm_state" and event.new_state in (VmState.STOPPED.value, "deleted"):
            self._capacity_changed = True

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
            if host.state is HostState.NOT_RESPONDING and host.fence_decided:
                # Stopped between the verdict and recording `fencing`: go on from there.
                self._set_host(host.name, HostState.FENCING, host.state_reason)
                host = replace(host, state=HostState.FENCING)
            if host.state is HostState.FENCING:
                log.warning("resuming the failover of host %s", host.name)
                self._bus.emit("failover", f"resuming the failover of host {host.name}", host=host.name)
                self._spawn(f"fence:{host.name}", self._failover(host.name))

    def tick(self) -> None:
        now = self._now()
        states = {h.name: h.state for h in self._store.list_hosts()}
        for name in states:
            self.detector.add_host(name, now)
        for name in self.detector.hosts() - states.keys():
            self.detector.remove_host(name)  # removed (RemoveHost): judged afresh if it returns
        for verdict in self.detector.evaluate(states, now):
            self._act(verdict)

    def _act(self, verdict: Verdict) -> None:
        host = verdict.host
        if verdict.action is Action.SET_STATE and verdict.state is not None:
            self._set_host(host, verdict.state, verdict.reason, fence_decided=verdict.fence_follows)
        elif verdict.action is Action.PROBE:
            self._spawn(f"probe:{host}", self._probe(host))
        elif verdict.action is Action.FENCE:
            if self._set_host(host, HostState.FENCING, verdict.reason):
                self._spawn(f"fence:{host}", self._failover(host))
        elif verdict.action is Action.REFRESH:
            # A host whose management path stays cut while it beats would be asked at
            # every tick: once per heartbeat window is enough.
            now = self._now()
            if now - self._refreshed_at.get(host, -1e18) < self.detector.window:
                return
            self._refreshed_at[host] = now
            self._bus.emit("detector", f"host {host}: {verdict.reason}; refreshing it", host=host)
            self._spawn(f"refresh:{host}", self._refresh_back(host))

    def _set_host(self, name: str, state: HostState, reason: str, fence_decided: bool = False) -> bool:
        host = self._store.get_host(name)
        if host is None:
            return False
        if host.state is state:
            if fence_decided and not host.fence_decided:
                self._store.put_host(replace(host, state_reason=reason, fence_decided=True))
            return True
        try:
            self._store.put_host(set_host_state(host, state, reason, fence_decided))
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
                await self._agents.probe(name, host.address, self._settings.probe_timeout_s)
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

    # --- failover ---------------------------------------------------------------

    async def _failover(self, name: str) -> None:
        host = self._store.get_host(name)
        if host is None:
            return
        self._bus.emit("failover", f"fencing host {name}: taking its VMs away", host=name)
        to_restart = self.failover.mark(host)
        if host.cluster:
            # Alongside the restarts, not before them: placement already knows what the
            # manager placed, and the failed host's VMs are held from the refresh.
            self._spawn(
                f"refresh-cluster:{host.cluster}",
                self._refresh_cluster(host.cluster, f"host {name} failed"),
            )
        await self.failover.restart_all(name, to_restart)
        self._set_host(name, HostState.FENCED, "its VMs were taken away; it rejoins once it answers again")

    def retry_waiting(self) -> None:
        """Try again VMs that wait for capacity (a node may have returned, a VM stopped)."""
        by_host: dict[str, list[VmRecord]] = {}
        for vm in self._store.list_vms():
            if vm.failover_from is not None and not self.failover.restarting(vm.id):
                by_host.setdefault(vm.failover_from, []).append(vm)
        for name, vms in by_host.items():
            host = self._store.get_host(name)
            if host is not None and host.state is HostState.FENCING:
                continue  # its own failover task handles them
            self._spawn(f"retry:{name}", self.failover.restart_all(name, vms))
