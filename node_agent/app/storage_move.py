"""Moving a VM's files to another local disk, CSV volume or LUN of the same host.

A stopped or saved VM's files are copied, switched to and the old ones removed. A
running VM keeps running: the journal region of its disk is copied while the guest
writes, then the guest pauses briefly, the delta is copied, the VM's configuration
and lease are written at the new place, the disk is reopened there, and the guest
resumes; no journal write is lost or repeated. Only the journal region is copied:
it is all the guest ever writes, and the new disk is sparse like the old one. The
VM's data disks (converted pass-through disks, which no guest writes) are copied whole
first.

The old directory stops being a VM (its vm.json goes) before the guest writes in the
new one: otherwise, until it is removed, its lease and files would still look valid,
and a failover after a crash could take over the old files and lose the later writes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from node_agent.app.guests import HostedVm, stop_guest
from node_agent.app.hosted_vms import HostedVms
from node_agent.core.errors import FailedPrecondition, InvalidArgument
from node_agent.core.journal import journal_region_end
from node_agent.core.lease import Lease
from node_agent.core.power import PowerState
from node_agent.core.views import VmView
from node_agent.core.virtual_disks import DiskBlocks
from node_agent.core.vm import (
    GIB,
    StorageRef,
    VmSpec,
    check_lun_free,
    check_storage_room,
    check_storage_visible,
)
from node_agent.core.vm_devices import check_storage_not_passed_through

log = logging.getLogger(__name__)

_MOVABLE = frozenset({PowerState.STOPPED, PowerState.SAVED, PowerState.RUNNING})
# What GetVm shows as the VM's migration while its files move.
STORAGE_MOVE_ID = "storage-move"


@dataclass(frozen=True)
class StorageMoveResult:
    vm: VmView
    bytes_copied: int
    duration_ms: int
    blackout_ms: int


async def move_storage(vms: HostedVms, vm: HostedVm, storage: StorageRef) -> StorageMoveResult:
    """Move the files of one of this host's VMs to `storage`, running or not."""
    files, disks, clock = vms.files, vms.disks, vms.clock
    started = clock.monotonic()
    async with vm.lock:
        if vms.hosted(vm.spec.id) is not vm:
            raise FailedPrecondition(f"VM {vm.label} left host {vms.config.name} meanwhile")
        vms.check_not_migrating(vm)
        if vm.state not in _MOVABLE:
            raise FailedPrecondition(
                f"VM {vm.label} is {vm.state.value}; its storage can be moved while it is running, "
                "stopped or saved"
            )
        if storage == vm.spec.storage:
            raise InvalidArgument(f"storage: VM {vm.label} is already on {storage.kind.label} {storage.name}")
        spec = replace(vm.spec, storage=storage)
        if storage in vm.spec.passthrough_disks:
            raise FailedPrecondition(
                f"storage: {storage.kind.label} {storage.name} is passed through to VM {vm.label}; "
                "it cannot also hold its files"
            )
        check_storage_not_passed_through(spec, vms.others(spec), vms.config)
        capacity = check_storage_visible(storage, vms.config)
        new_dir = files.vm_dir(spec)
        if files.has_vm(new_dir):
            raise FailedPrecondition(
                f"{storage.kind.label} {storage.name} already holds files of VM {vm.label}"
            )
        check_lun_free(spec, files.vm_ids_on(storage))
        check_storage_room(spec, capacity, files.used_bytes(storage))
        old_dir = vm.vm_dir
        blackout_ms = 0
        vm.migration_id = STORAGE_MOVE_ID
        try:
            await asyncio.to_thread(files.remove_vm_dir, new_dir)
            new_dir.mkdir(parents=True)
            copied = await _copy_data_disks(vms, spec, old_dir, new_dir)
            target = disks.open_blocks(new_dir / disks.disk_name, create_bytes=spec.disk_gb * GIB)
            source = disks.open_blocks(vm.disk)
            try:
                if vm.guest is not None and vm.state is PowerState.RUNNING:
                    copied += await _copy(source, target, 0, journal_region_end(vm.guest.journal))
                    paused_at = clock.monotonic()
                    await stop_guest(vm)
                    try:
                        copied += await _copy(source, target, copied, journal_region_end(vm.guest.journal))
                        await _switch(vms, vm, spec, new_dir, target)
                    finally:
                        if vms.hosted(vm.spec.id) is vm and vm.guest is not None:
                            vms.start_guest(vm)
                    blackout_ms = int((clock.monotonic() - paused_at) * 1000)
                else:
                    position = await asyncio.to_thread(disks.scan_journal, vm.disk)
                    copied += await _copy(source, target, 0, journal_region_end(position))
                    if vm.state is PowerState.SAVED:
                        data = await asyncio.to_thread(files.read_saved_state, old_dir)
                        await asyncio.to_thread(files.write_saved_state, new_dir, data)
                        copied += len(data)
                    await _switch(vms, vm, spec, new_dir, target)
            finally:
                source.close()
                target.close()
        except BaseException:
            if vm.vm_dir != new_dir:
                await asyncio.to_thread(files.remove_vm_dir, new_dir)
            raise
        finally:
            vm.migration_id = ""
        await asyncio.to_thread(files.remove_vm_dir, old_dir)
        duration_ms = int((clock.monotonic() - started) * 1000)
        log.info(
            "VM %s: files moved from %s to %s (%d bytes, blackout %d ms)",
            vm.label,
            old_dir,
            new_dir,
            copied,
            blackout_ms,
        )
        return StorageMoveResult(vm.view(), copied, duration_ms, blackout_ms)


async def _copy(source: DiskBlocks, target: DiskBlocks, start: int, end: int) -> int:
    step = 1 << 20
    for offset in range(start, end, step):
        data = await asyncio.to_thread(source.read, offset, min(step, end - offset))
        await asyncio.to_thread(target.write, offset, data)
    return max(0, end - start)


async def _copy_data_disks(vms: HostedVms, spec: VmSpec, old_dir: Path, new_dir: Path) -> int:
    """The VM's data disks, whole: converted disks the guest no longer writes, so they are
    copied first, while a running guest goes on."""
    copied = 0
    for data in spec.data_disks:
        source = vms.disks.open_blocks(old_dir / data.file)
        target = vms.disks.open_blocks(new_dir / data.file, create_bytes=data.size_bytes)
        try:
            for offset, length in await asyncio.to_thread(source.extents):
                copied += await _copy(source, target, offset, offset + length)
            await asyncio.to_thread(target.sync)
        finally:
            source.close()
            target.close()
    return copied


async def _switch(vms: HostedVms, vm: HostedVm, spec: VmSpec, new_dir: Path, target: DiskBlocks) -> None:
    """Make the new place the VM's and the old one no longer a VM, before the guest writes again.

    Lease, disk and vm.json at the new place, then the registry, then the old vm.json goes.
    """
    await asyncio.to_thread(target.sync)
    await asyncio.to_thread(vms.files.write_lease, new_dir, Lease(vm.lease_generation, vms.config.name))
    await asyncio.to_thread(vms.files.write_vm_config, new_dir, spec)
    if vm.journal is not None:
        vm.journal.close()
        vm.journal = vms.disks.open_journal(new_dir / vm.disk_name)
    vm.spec = spec
    vm.lease_watch = vms.files.lease_watch(new_dir)
    old_dir, vm.vm_dir = vm.vm_dir, new_dir
    vms.persist(vm)
    await asyncio.to_thread(vms.files.remove_vm_config, old_dir)
