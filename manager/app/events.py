"""The event bus: every host and VM state change, verdict and failover action, in order.

Events are kept in a bounded ring buffer (WatchEvents replays the recent ones), fanned
out to in-process watchers, and handed to an optional publisher (MQTT). The store
wrapper below turns every state change written to the store into an event, so no
code path that changes a state can forget to tell.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from manager.core.model import ClusterRecord, Event, HostRecord, JobRecord, MigrationRecord, VmRecord
from manager.core.states import JobState, MigrationState
from manager.core.store import Store

log = logging.getLogger(__name__)

Publisher = Callable[[Event], None]


class EventBus:
    def __init__(self, size: int, clock: Callable[[], datetime]) -> None:
        self._ring: deque[Event] = deque(maxlen=max(1, size))
        self._clock = clock
        self._watchers: set[asyncio.Queue[Event]] = set()
        self._publishers: list[Publisher] = []

    def add_publisher(self, publisher: Publisher) -> None:
        self._publishers.append(publisher)

    def emit(
        self,
        kind: str,
        detail: str,
        host: str = "",
        vm: str = "",
        cluster: str = "",
        old_state: str = "",
        new_state: str = "",
    ) -> Event:
        event = Event(self._clock(), kind, host, vm, detail, cluster, old_state, new_state)
        self._ring.append(event)
        for queue in self._watchers:
            queue.put_nowait(event)
        for publish in self._publishers:
            try:
                publish(event)
            except Exception:  # a broken publisher must not stop the cluster's reaction
                log.exception("publishing event failed")
        return event

    def recent(self, count: int) -> list[Event]:
        return list(self._ring)[-count:] if count > 0 else []

    async def watch(self, replay: int, follow: bool = True) -> AsyncIterator[Event]:
        """Up to `replay` recent events, then (with `follow`) every new one until the
        caller stops."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            for event in self.recent(replay):
                yield event
            while follow:
                yield await queue.get()
        finally:
            self._watchers.discard(queue)


class EventingStore:
    """A Store that emits `host_state` and `vm_state` events for every state change."""

    def __init__(self, inner: Store, bus: EventBus) -> None:
        self._inner = inner
        self._bus = bus

    def put_host(self, host: HostRecord) -> None:
        old = self._inner.get_host(host.name)
        self._inner.put_host(host)
        if old is not None and old.state is not host.state:
            why = f": {host.state_reason}" if host.state_reason else ""
            self._bus.emit(
                "host_state",
                f"host {host.name} {old.state.value} => {host.state.value}{why}",
                host=host.name,
                old_state=old.state.value,
                new_state=host.state.value,
            )

    def put_vm(self, vm: VmRecord) -> None:
        old = self._inner.get_vm(vm.id)
        self._inner.put_vm(vm)
        if old is None or old.state is not vm.state or old.host != vm.host:
            before = f"{old.state.value} on {old.host or 'no host'}" if old is not None else "new"
            why = f" ({vm.reason})" if vm.reason else ""
            self._bus.emit(
                "vm_state",
                f"VM {vm.name} {before} => {vm.state.value} on {vm.host or 'no host'}{why}",
                host=vm.host or "",
                vm=vm.name,
                old_state=old.state.value if old is not None else "new",
                new_state=vm.state.value,
            )

    def delete_vm(self, vm_id: str) -> None:
        old = self._inner.get_vm(vm_id)
        self._inner.delete_vm(vm_id)
        if old is not None:
            self._bus.emit(
                "vm_state",
                f"VM {old.name} deleted",
                host=old.host or "",
                vm=old.name,
                old_state=old.state.value,
                new_state="deleted",
            )

    # Everything else passes through.
    def get_host(self, name: str) -> HostRecord | None:
        return self._inner.get_host(name)

    def list_hosts(self) -> list[HostRecord]:
        return self._inner.list_hosts()

    def delete_host(self, name: str) -> None:
        self._inner.delete_host(name)

    def delete_cluster(self, name: str) -> None:
        self._inner.delete_cluster(name)

    def get_cluster(self, name: str) -> ClusterRecord | None:
        return self._inner.get_cluster(name)

    def list_clusters(self) -> list[ClusterRecord]:
        return self._inner.list_clusters()

    def put_cluster(self, cluster: ClusterRecord) -> None:
        self._inner.put_cluster(cluster)

    def get_vm(self, vm_id: str) -> VmRecord | None:
        return self._inner.get_vm(vm_id)

    def get_vm_by_name(self, name: str) -> VmRecord | None:
        return self._inner.get_vm_by_name(name)

    def list_vms(self, host: str | None = None) -> list[VmRecord]:
        return self._inner.list_vms(host)

    def get_job(self, job_id: str) -> JobRecord | None:
        return self._inner.get_job(job_id)

    def list_jobs(self, limit: int, state: JobState | None = None) -> list[JobRecord]:
        return self._inner.list_jobs(limit, state)

    def put_job(self, job: JobRecord) -> None:
        self._inner.put_job(job)

    def get_migration(self, migration_id: str) -> MigrationRecord | None:
        return self._inner.get_migration(migration_id)

    def list_migrations(
        self, limit: int, states: frozenset[MigrationState] | None = None
    ) -> list[MigrationRecord]:
        return self._inner.list_migrations(limit, states)

    def put_migration(self, migration: MigrationRecord) -> None:
        self._inner.put_migration(migration)

    def close(self) -> None:
        self._inner.close()
