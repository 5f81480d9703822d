"""The guest task inside the agent: how it ends when its model or its disk fails, or
when its lease moves to another host."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from node_agent.adapters.clock import SYSTEM_CLOCK
from node_agent.adapters.files import VM_DISK, JournalFile, LeaseWatch, scan_disk_journal, write_atomically
from node_agent.app.guests import GuestFailed, GuestHooks, HostedVm, start_guest, stop_guest
from node_agent.core.guest import GuestModel, TickResult
from node_agent.core.journal import JournalPosition, decode_record, record_offset
from node_agent.core.lease import Fenced, Lease
from node_agent.core.power import PowerState
from node_agent.core.vm import StorageKind, StorageRef, VmSpec, Workload

TICK_S = 0.01
SPEC = VmSpec("vm-1", "web1", 4, 1, 1, StorageRef(StorageKind.CSV, "Volume1"))


class CrashingGuest(GuestModel):
    """A guest model with a bug: its third tick raises."""

    ticks = 0

    def tick(self, dt_s: float) -> TickResult:
        self.ticks += 1
        if self.ticks == 3:
            raise OverflowError("cannot convert float infinity to integer")
        return super().tick(dt_s)


def _hosted(tmp_path: Path, guest: GuestModel) -> HostedVm:
    (tmp_path / VM_DISK).write_bytes(bytes(1 << 16))
    vm = HostedVm(
        spec=SPEC,
        vm_dir=tmp_path,
        state=PowerState.RUNNING,
        state_since=0.0,
        lease_watch=LeaseWatch(tmp_path / "lease.json"),
        lease_generation=1,
        disk_name=VM_DISK,
    )
    vm.guest, vm.journal = guest, JournalFile(vm.disk)
    return vm


def write_lease(vm_dir: Path, lease: Lease) -> None:
    doc = json.dumps({"generation": lease.generation, "owner": lease.owner}).encode()
    write_atomically(vm_dir / "lease.json", doc)


def _hooks(on_failure: GuestFailed, on_fenced: object = None) -> GuestHooks:
    def fenced(vm: HostedVm, exc: Fenced) -> None:
        raise AssertionError(f"unexpected fencing: {exc.message}")

    return GuestHooks("node1", TICK_S, on_failure, on_fenced or fenced, SYSTEM_CLOCK)  # type: ignore[arg-type]


async def test_a_crashing_guest_fails_its_vm_and_releases_its_memory(tmp_path: Path) -> None:
    guest = CrashingGuest.fresh_boot("vm-1", SPEC.memory_pages, Workload(1, 100), JournalPosition())
    vm = _hosted(tmp_path, guest)
    failures: list[str] = []
    start_guest(vm, _hooks(lambda failed, reason: failures.append(f"{failed.label}: {reason}")))
    task = vm.task
    assert task is not None
    await asyncio.wait_for(asyncio.wait([task]), timeout=5)

    assert failures == ["web1: its guest crashed: OverflowError: cannot convert float infinity to integer"]
    assert task.exception() is None, "the task ended on its own, not with an error"
    assert vm.task is None and vm.guest is None and vm.journal is None
    assert vm.idle_journal is not None and vm.idle_journal.last_seq >= 1
    await stop_guest(vm)  # turning the failed VM off afterwards is quiet


async def test_stopping_a_guest_that_already_died_does_not_raise(tmp_path: Path) -> None:
    vm = _hosted(tmp_path, GuestModel.fresh_boot("vm-1", 16, Workload(0, 0), JournalPosition()))

    async def died() -> None:
        raise RuntimeError("guest task died")

    vm.task = asyncio.create_task(died())
    await asyncio.sleep(0)
    assert vm.task.done()
    await stop_guest(vm)
    assert vm.task is None
    vm.journal.close()  # type: ignore[union-attr]


async def test_stopping_a_running_guest_cancels_it(tmp_path: Path) -> None:
    vm = _hosted(tmp_path, GuestModel.fresh_boot("vm-1", 16, Workload(1, 1000), JournalPosition()))
    start_guest(vm, _hooks(lambda failed, reason: None))
    task = vm.task
    await asyncio.sleep(5 * TICK_S)
    await stop_guest(vm)
    assert task is not None and task.cancelled() and vm.task is None
    assert vm.guest is not None and vm.guest.journal.last_seq >= 1
    vm.journal.close()  # type: ignore[union-attr]


async def test_a_newer_lease_fences_the_guest_before_its_next_write(tmp_path: Path) -> None:
    write_lease(tmp_path, Lease(1, "node1"))
    vm = _hosted(tmp_path, GuestModel.fresh_boot("vm-1", 16, Workload(0, 1000), JournalPosition()))
    fenced: list[str] = []
    start_guest(vm, _hooks(lambda failed, reason: None, lambda f, exc: fenced.append(exc.message)))
    task = vm.task
    assert task is not None
    while vm.guest is not None and vm.guest.journal.last_seq < 5:
        await asyncio.sleep(TICK_S)
    # Same size, maybe the same mtime: the new inode still tells the watch to re-read.
    write_lease(tmp_path, Lease(2, "node2"))
    await asyncio.wait_for(asyncio.wait([task]), timeout=5)

    assert fenced == ["VM web1 fenced: the lease moved to node2 (generation 2)"]
    assert vm.task is None and vm.guest is None and vm.journal is None
    last = scan_disk_journal(vm.disk).last_seq
    assert vm.idle_journal is not None and vm.idle_journal.last_seq == last >= 5
    with open(vm.disk, "rb") as disk:
        disk.seek(record_offset(last))
        record = decode_record(disk.read(64))
    assert record is not None and record.generation == 1
