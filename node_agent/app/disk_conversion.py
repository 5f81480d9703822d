"""ConvertDisk: a stopped VM's pass-through disk becomes a virtual disk in its directory.

The disk's written blocks (the pass-through image, adapters.files) are copied chunk by
chunk, in the executor, into a file beside the VM's system disk under a temporary name,
with progress as they go; then the copy is synced and renamed, and only then is the
VM's configuration rewritten (core.disk_conversion: the disk is a data disk and passed
through no longer). The VM's lock is held throughout, so that it can be neither
started nor moved meanwhile. A failure or a caller that goes away before the rename
leaves no file and the VM as it was; one after it leaves a file that the next
conversion overwrites.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

from node_agent.app.hosted_vms import HostedVms
from node_agent.core.disk_conversion import (
    ConversionProgress,
    check_convertible,
    converted_spec,
    data_disk_file,
)
from node_agent.core.errors import ResourceExhausted
from node_agent.core.transfer import CHUNK_BYTES, PROGRESS_INTERVAL_S, chunk_spans, rate_mb_per_s
from node_agent.core.virtual_disks import DiskBlocks
from node_agent.core.vm import StorageRef, check_storage_visible

log = logging.getLogger(__name__)


async def convert_disk(
    vms: HostedVms, vm_id: str, disk: StorageRef
) -> AsyncGenerator[ConversionProgress, None]:
    """Convert the VM's pass-through `disk`; iterate for the progress, the last update
    carrying the VM as it is afterwards."""
    vm = vms.operable(vm_id)
    files, disks, clock = vms.files, vms.disks, vms.clock
    async with vm.lock:
        vms.check_still_here(vm)
        check_convertible(vm.spec, vm.state, bool(vm.migration_id), disk)
        vms.check_lease(vm)
        image = await asyncio.to_thread(files.passthrough_image, disk)
        target = vm.vm_dir / data_disk_file(disk)
        partial = vm.vm_dir / f".{target.name}.converting"
        source = disks.open_blocks(image)
        started = clock.monotonic()
        try:
            spans = list(chunk_spans(await asyncio.to_thread(source.extents), source.size, CHUNK_BYTES))
            total = sum(length for _, length in spans)
            capacity = check_storage_visible(vm.spec.storage, vms.config)
            used = await asyncio.to_thread(files.used_bytes, vm.spec.storage)
            if used + total > capacity:
                raise ResourceExhausted(
                    f"{vm.spec.storage.kind.label} {vm.spec.storage.name} of host {vms.config.name} has "
                    f"{max(0, capacity - used)} bytes free; the {disk.kind.label} {disk.name} of VM "
                    f"{vm.label} holds {total}"
                )
            await asyncio.to_thread(partial.unlink, missing_ok=True)  # an interrupted one's
            copy = disks.open_blocks(partial, create_bytes=source.size)
            try:
                copied, told = 0, started
                yield ConversionProgress(0, total, 0.0)
                for offset, length in spans:
                    await asyncio.to_thread(_copy, source, copy, offset, length)
                    copied += length
                    now = clock.monotonic()
                    if now - told >= PROGRESS_INTERVAL_S:
                        told = now
                        yield ConversionProgress(copied, total, rate_mb_per_s(copied, now - started))
                await asyncio.to_thread(copy.sync)
            finally:
                copy.close()
            await asyncio.to_thread(partial.replace, target)
        except BaseException:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
            raise
        finally:
            source.close()
        spec = converted_spec(vm.spec, disk, source.size)
        await asyncio.to_thread(files.write_vm_config, vm.vm_dir, spec)
        vm.spec = spec
        vms.persist(vm)
        elapsed = clock.monotonic() - started
        log.info(
            "VM %s: %s %s converted to virtual disk %s (%d bytes copied in %.2f s)",
            vm.label,
            disk.kind.label,
            disk.name,
            target.name,
            total,
            elapsed,
        )
        yield ConversionProgress(total, total, rate_mb_per_s(total, elapsed), vm.view())


def _copy(source: DiskBlocks, target: DiskBlocks, offset: int, length: int) -> None:
    target.write(offset, source.read(offset, length))
