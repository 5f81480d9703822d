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

from manager.core.config_status import ConfigStatus
from manager.core.model import Event, HostRecord, VmRecord
from manager.core.store import ForwardingStore, Store

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


class EventingStore(ForwardingStore):
    """A Store that emits `host_state` and `vm_state` events for every state change, and
    `vm_status` events when a VM's cluster configuration status or its reasons change."""

    def __init__(self, inner: Store, bus: EventBus) -> None:
        super().__init__(inner)
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
        self._status_changed(old, vm)

    def _status_changed(self, old: VmRecord | None, vm: VmRecord) -> None:
        before = (old.status, old.status_reasons) if old is not None else (ConfigStatus.OK, ())
        if before == (vm.status, vm.status_reasons):
            return
        standing = "; ".join(r.detail for r in vm.status_reasons if r not in vm.ignored_reasons)
        ignored = "; ".join(r.detail for r in vm.ignored_reasons)
        if before[0] is vm.status:
            # Same status, other reasons (an ignored one reads differently now, say).
            head = f"VM {vm.name} stays {vm.status.value}"
        else:
            head = f"VM {vm.name} {before[0].value} => {vm.status.value}"
        parts = [f": {standing}" if standing else ""]
        if ignored:
            parts.append(f" (ignored by repair: {ignored})")
        self._bus.emit(
            "vm_status",
            head + "".join(parts),
            host=vm.host or "",
            vm=vm.name,
            old_state=before[0].value,
            new_state=vm.status.value,
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
