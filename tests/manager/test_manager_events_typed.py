"""State-change events carry the states themselves, so that programs (the HA service's
capacity watch among them) never read the sentence."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from manager.adapters.memory_store import MemoryStore
from manager.adapters.proto_mapping import event_to_proto
from manager.app.events import EventBus, EventingStore
from manager.core.model import CpuSpec, HostRecord, StorageKind, StorageLocation, VmRecord
from manager.core.states import HostState, VmState


def bus_and_store() -> tuple[EventBus, EventingStore]:
    bus = EventBus(100, lambda: datetime(2026, 1, 1, tzinfo=UTC))
    return bus, EventingStore(MemoryStore(), bus)


def test_host_vm_and_deletion_events_name_both_states() -> None:
    bus, store = bus_and_store()
    cpu = CpuSpec("GenuineIntel", "Xeon", ("sse3",), 8, 2933)
    host = HostRecord(
        "node1", "cluster1", "hyperv-2008r2", "127.0.0.1:1", cpu, 32768, 2048, 30000, (), (), ()
    )
    store.put_host(host)
    store.put_host(replace(host, state=HostState.FENCED, state_reason="gone"))
    vm = VmRecord(
        id="v1",
        name="web1",
        host="node1",
        state=VmState.STOPPED,
        highly_available=True,
        memory_mb=256,
        cpus=1,
        disk_gb=1,
        storage=StorageLocation(StorageKind.CSV, "Volume1"),
    )
    store.put_vm(vm)
    store.put_vm(replace(vm, state=VmState.RUNNING))
    store.delete_vm("v1")
    changes = [(e.kind, e.old_state, e.new_state) for e in bus.recent(10)]
    assert changes == [
        ("host_state", host.state.value, "fenced"),
        ("vm_state", "new", "stopped"),
        ("vm_state", "stopped", "running"),
        ("vm_state", "running", "deleted"),
    ]
    wire = event_to_proto(bus.recent(1)[0])
    assert (wire.old_state, wire.new_state) == ("running", "deleted")


def test_other_events_have_no_states() -> None:
    bus, _ = bus_and_store()
    event = bus.emit("failover", "fencing host node1")
    assert (event.old_state, event.new_state) == ("", "")
