"""The destination side of a network transfer: files that become a VM only once whole.

The source agent opens the stream (app.transfer_out). Its offer is checked as any VM
coming here is: its configuration on this host, its storage visible with room for its
disk, a LUN no other VM holds, the processor a saved guest sees, no VM of that id here
or on its way, no VM's files where its own would go. Then the VM's directory is made
with a sparse disk of the full size, and one per data disk. Each chunk is checked where it says it belongs
and added to its file's digest (core.transfer), then, in the executor, checked against
its CRC-32C and written, while the next chunks are read off the stream
(app.worker_threads). At the end the byte counts and the digests must be the source's;
then the files are completed in the order that keeps a crash harmless, as a creation
does (app.ownership): the disks synced, the lease, the saved state, vm.json last; then
the registry, and the VM is this host's, stopped or saved.

Anything else (a refusal, a damaged chunk, a stream that ends or falls silent before
its end, a cancellation) removes the directory: nothing of the VM stays here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from google_crc32c import value as crc32c

from node_agent.app.hosted_vms import HostedVms
from node_agent.app.worker_threads import Drain, settled
from node_agent.core.config import HostConfig
from node_agent.core.cpu import GuestCpu, cpu_reasons
from node_agent.core.errors import (
    AgentError,
    AlreadyExists,
    Corrupted,
    FailedPrecondition,
    InvalidArgument,
    StorageFault,
    Unavailable,
)
from node_agent.core.guest import decode_saved_state_with_cpu
from node_agent.core.lease import Lease
from node_agent.core.power import PowerState
from node_agent.core.transfer import (
    WRITE_BEHIND_CHUNKS,
    FileChunk,
    FilesEnd,
    FilesOffer,
    ReceivedFiles,
    TransferMessage,
    VmFile,
    check_offer,
)
from node_agent.core.views import VmView
from node_agent.core.virtual_disks import DiskBlocks
from node_agent.core.vm import (
    GIB,
    VmSpec,
    check_lun_free,
    check_storage_room,
    check_storage_visible,
    validate_spec,
)

log = logging.getLogger(__name__)

# Disk bytes written between two syncs started in the background: the sync at the end,
# before the answer the source waits for (within its stall timeout), then has little
# left to write. A sync still under way when the next is due holds the stream back:
# no more than twice this is ever unsynced, however slow the storage.
SYNC_EVERY_BYTES = 128 * 1024 * 1024


class IncomingTransfer:
    """One network transfer arriving at this host."""

    def __init__(self, vms: HostedVms) -> None:
        self._vms = vms
        self._files = vms.files
        self._stall_s = vms.config.settings.migration_stall_timeout_s
        self._offer: FilesOffer | None = None
        self._vm_dir: Path | None = None
        self._disk: DiskBlocks | None = None
        # Its data disks (converted pass-through disks), in the order of spec.data_disks.
        self._data_disks: list[DiskBlocks] = []
        self._received: ReceivedFiles | None = None
        self._saved = bytearray()
        # What checks and writes the chunks in the executor, and the sync under way.
        self._writer: Drain[FileChunk] | None = None
        self._syncing: asyncio.Future[None] | None = None
        self._unsynced = 0
        # How far the disk was written, and how far its synced pages were let go.
        self._written_end = 0
        self._released_end = 0

    @property
    def _config(self) -> HostConfig:
        # Read at each use: the host's networks and volumes may change while it runs.
        return self._vms.config

    async def receive(
        self, messages: AsyncIterator[TransferMessage], accepted: Callable[[], Awaitable[None]]
    ) -> VmView:
        """Take the stream to its end; the VM as this host now holds it. `accepted` tells the
        source that its offer was taken and the chunks may come."""
        offer = await self._next(messages, "its offer")
        if not isinstance(offer, FilesOffer):
            raise InvalidArgument("offer: the first message of a network transfer must be its offer")
        self._accept(offer)
        try:
            self._writer = Drain(self._absorb, WRITE_BEHIND_CHUNKS)
            await accepted()
            end = await self._take_files(messages)
            view = await self._complete(end)
        except BaseException as exc:
            await self._discard(exc)
            raise
        finally:
            self._vms.files_settled(offer.spec, offer.transfer_id)
        return view

    async def _next(self, messages: AsyncIterator[TransferMessage], what: str) -> TransferMessage | None:
        """The next message, None once the source closed the stream; Unavailable when it fell silent."""
        try:
            async with asyncio.timeout(self._stall_s):
                return await anext(messages, None)
        except TimeoutError:
            source = f"host {self._offer.source_host}" if self._offer is not None else "the source"
            raise Unavailable(
                f"{source} fell silent for {self._stall_s:g} s while host {self._config.name} "
                f"waited for {what}"
            ) from None

    # The offer

    def _accept(self, offer: FilesOffer) -> None:
        """Check the offer and make the VM's directory with its empty disk; no await here,
        so that nothing else can take the VM's id or directory in between."""
        vms, files, config, spec = self._vms, self._files, self._config, offer.spec
        check_offer(offer)
        validate_spec(spec, config)
        vms.check_configuration(spec)
        vms.check_not_arriving(spec)
        existing = vms.hosted(spec.id)
        if existing is not None and not vms.drop_if_fenced(existing):
            raise AlreadyExists(f"VM {spec.label} ({spec.id}) already exists on host {config.name}")
        if offer.cpu is not None and not config.profile.traits.library_server:
            self._check_cpu(spec, offer.cpu)
        where = f"{spec.storage.kind.label} {spec.storage.name}"
        capacity = check_storage_visible(spec.storage, config)
        vm_dir = files.vm_dir(spec)
        if files.has_vm(vm_dir):
            raise AlreadyExists(f"{where} of host {config.name} already holds files of VM {spec.label}")
        check_lun_free(spec, files.vm_ids_on(spec.storage))
        files.remove_vm_dir(vm_dir)  # remains of an interrupted creation or transfer: no vm.json there
        check_storage_room(spec, capacity, files.used_bytes(spec.storage))
        try:
            vm_dir.mkdir(parents=True)
            self._disk = self._vms.disks.open_blocks(
                vm_dir / self._vms.disks.disk_name, create_bytes=spec.disk_gb * GIB
            )
            for data in spec.data_disks:
                self._data_disks.append(
                    self._vms.disks.open_blocks(vm_dir / data.file, create_bytes=data.size_bytes)
                )
        except OSError as exc:
            self._close_disks()
            files.remove_vm_dir(vm_dir)
            raise StorageFault(
                f"host {config.name} cannot create the files of VM {spec.label} on {where}: {exc.strerror}"
            ) from None
        vms.expect_files(spec, offer.transfer_id)
        self._offer, self._vm_dir, self._received = offer, vm_dir, ReceivedFiles(offer)
        log.info(
            "VM %s (%s): network transfer %s from %s accepted: %d disk bytes, %d saved state bytes",
            spec.label,
            offer.state.value,
            offer.transfer_id,
            offer.source_host,
            offer.disk_bytes,
            offer.saved_state_bytes,
        )

    def _check_cpu(self, spec: VmSpec, cpu: GuestCpu) -> None:
        """A saved guest restores only on a processor that offers what it sees."""
        config = self._config
        missing = cpu_reasons(spec.label, config.name, config.cpu, cpu, spec.processor_compatibility)
        if missing:
            raise FailedPrecondition(f"host {config.name} cannot take saved VM {spec.label}: {missing[0]}")

    # The chunks

    async def _take_files(self, messages: AsyncIterator[TransferMessage]) -> FilesEnd:
        offer = self._offer
        assert offer is not None
        while True:
            message = await self._next(messages, "the next chunk")
            if isinstance(message, FileChunk):
                await self._take(message)
            elif isinstance(message, FilesEnd):
                return message
            elif message is None:
                assert self._writer is not None
                await self._writer.finish()  # a damaged last chunk is the better reason
                raise InvalidArgument(
                    f"end: the network transfer of VM {offer.spec.label} ended before its end message"
                )
            else:
                raise InvalidArgument("offer: a network transfer has only one")

    async def _take(self, chunk: FileChunk) -> None:
        received, writer = self._received, self._writer
        assert received is not None and writer is not None
        received.admit(chunk)
        await writer.put(chunk)
        if chunk.file is VmFile.DISK:
            self._unsynced += len(chunk.data)
            if self._unsynced >= SYNC_EVERY_BYTES:
                if self._syncing is not None:
                    await self._syncing  # raises its failure, if any
                disk = self._disk
                assert disk is not None
                self._syncing = asyncio.ensure_future(asyncio.to_thread(self._sync_and_release, disk))
                self._unsynced = 0

    def _sync_and_release(self, disk: DiskBlocks) -> None:
        """Sync the disk, then let go of the cached pages it wrote up to then: a 4 GiB copy
        leaves no 4 GiB of page cache behind, and fresh pages are slow to come by on a
        host whose memory is given back to its hypervisor."""
        end = self._written_end
        disk.sync()
        disk.release(self._released_end, end - self._released_end)
        self._released_end = end

    def _absorb(self, chunk: FileChunk) -> None:
        """Check one chunk and keep it. In the executor, one chunk after the other."""
        data = chunk.data
        if crc32c(data) != chunk.crc32c:
            raise Corrupted(
                f"chunk.crc32c: the chunk of the {chunk.file.label} at offset {chunk.offset} arrived damaged "
                "(CRC-32C mismatch)"
            )
        if chunk.file is VmFile.DISK:
            assert self._disk is not None
            self._disk.write(chunk.offset, data)
            self._written_end = chunk.offset + len(data)
        elif chunk.file is VmFile.DATA_DISK:
            self._data_disks[chunk.data_disk].write(chunk.offset, data)  # admitted: in range
        else:
            self._saved += data

    # The end

    async def _complete(self, end: FilesEnd) -> VmView:
        offer, received, vm_dir = self._offer, self._received, self._vm_dir
        assert offer is not None and received is not None and vm_dir is not None
        assert self._writer is not None
        await self._writer.finish()
        if self._syncing is not None:
            await self._syncing
        received.check_complete(end)
        spec = offer.spec
        saved = bytes(self._saved)
        cpu = offer.cpu
        if offer.state is PowerState.SAVED:
            recorded = await asyncio.to_thread(self._check_image, saved)
            if cpu is None and recorded is not None:
                self._check_cpu(spec, recorded)
                cpu = recorded
        # Finished in a thread that a cancellation cannot stop: waited for even then, so
        # that the discard never races it.
        writing = asyncio.ensure_future(asyncio.to_thread(self._write_out, saved))
        try:
            await asyncio.shield(writing)
        except asyncio.CancelledError:
            await asyncio.wait([writing])
            raise
        vm = self._vms.insert(spec, vm_dir, offer.state, offer.lease_generation, cpu)
        self._vm_dir = None  # the VM's now: never discarded
        log.info(
            "VM %s: network transfer %s from %s arrived whole (%d bytes); %s here with lease generation %d",
            spec.label,
            offer.transfer_id,
            offer.source_host,
            received.bytes_received,
            offer.state.value,
            offer.lease_generation,
        )
        return vm.view()

    def _close_disks(self) -> None:
        for blocks in (self._disk, *self._data_disks):
            if blocks is not None:
                blocks.close()
        self._disk, self._data_disks = None, []

    def _check_image(self, data: bytes) -> GuestCpu | None:
        """The saved state must be this VM's whole memory image; the processor it records."""
        offer = self._offer
        assert offer is not None
        try:
            return decode_saved_state_with_cpu(offer.spec.id, data).cpu
        except AgentError as exc:
            raise InvalidArgument(
                f"chunk: the saved state that arrived is no memory image of its VM: {exc.message}"
            ) from None

    def _write_out(self, saved: bytes) -> None:
        """The disk synced, then the lease, the saved state, and vm.json last: a VM whole."""
        offer, vm_dir, disk = self._offer, self._vm_dir, self._disk
        assert offer is not None and vm_dir is not None and disk is not None
        for data in self._data_disks:
            data.sync()
        disk.sync()
        self._close_disks()
        files = self._files
        files.write_lease(vm_dir, Lease(offer.lease_generation, self._config.name))
        if offer.state is PowerState.SAVED:
            files.write_saved_state(vm_dir, saved)
        files.write_vm_config(vm_dir, offer.spec)

    # Or nothing

    async def _discard(self, exc: BaseException) -> None:
        """Remove what this transfer wrote; the VM stays whole on its source."""
        offer, vm_dir = self._offer, self._vm_dir
        if self._writer is not None:
            await self._writer.abandon()
        if self._syncing is not None:
            await settled(self._syncing)
        self._close_disks()
        if vm_dir is None or offer is None:
            return
        self._files.remove_vm_dir(vm_dir)
        why = exc.message if isinstance(exc, AgentError) else type(exc).__name__
        log.warning(
            "VM %s: network transfer %s from %s discarded, nothing of it stays: %s",
            offer.spec.label,
            offer.transfer_id,
            offer.source_host,
            why,
        )
