"""The source side of a network transfer: a VM at rest sends its files, then lets them go.

A stopped or saved VM leaves for a host that does not see its storage: this host
streams the offer, the virtual disk's written extents and the saved memory image to
the destination agent (app.transfer_in) through the peer link port, then the end with
each file's digest over its chunks. The commit point is the destination's answer: it holds the VM,
registered with the newer lease, only once every byte arrived and checked out. Nothing
here changes before that answer, so any failure (a refusal, a destination that went
away or fell silent, a cancellation) leaves the VM exactly as it was: state, files and
registry entry. After it, this host lets its copy go: its registration, and its files
unless they are not this host's to remove (a newer lease of another host on them, or
the very files the destination now uses).

Throughout, the VM carries the transfer's id and its lock is held, so that it can be
neither started, changed, deleted nor moved meanwhile. The transfer runs on its own,
whoever listens (app.migration_updates): a caller that goes away neither stops it nor
leaves the VM half moved.

The copy is the hot path. The disk is read a chunk at a time in the executor, a few
chunks ahead of the stream, each chunk's CRC-32C computed there too (it releases the GIL
on such sizes), so that the event loop does little more than hand chunks to the stream
(app.worker_threads) and add each to its file's digest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Iterator
from dataclasses import replace
from pathlib import Path

from google_crc32c import value as crc32c

from node_agent.app.guests import HostedVm
from node_agent.app.hosted_vms import HostedVms
from node_agent.app.migration_updates import TransferUpdates
from node_agent.app.worker_threads import Prefetch
from node_agent.core.errors import AgentError, FailedPrecondition, StorageFault, Unavailable
from node_agent.core.lease import is_fenced
from node_agent.core.peer_link import FilesConnector, FilesLink
from node_agent.core.power import PowerState
from node_agent.core.transfer import (
    MIB,
    PROGRESS_INTERVAL_S,
    READ_AHEAD_CHUNKS,
    FileChunk,
    FileDigest,
    FilesEnd,
    FilesOffer,
    TransferProgress,
    TransferRequest,
    VmFile,
    check_request,
    check_sendable,
    chunk_size,
    chunk_spans,
    pause_s,
    rate_mb_per_s,
)
from node_agent.core.views import VmView
from node_agent.core.virtual_disks import DiskBlocks
from node_agent.core.vm import GIB, StorageKind
from node_agent.core.vm_devices import check_can_leave

log = logging.getLogger(__name__)


class OutgoingTransfer:
    """One network transfer of a VM of this host to another agent."""

    def __init__(
        self, vms: HostedVms, connect: FilesConnector, vm: HostedVm, request: TransferRequest
    ) -> None:
        self._vms = vms
        self._connect = connect
        self._clock = vms.clock
        self._host_name = vms.config.name
        self.vm = vm
        self.request = request
        self._updates = TransferUpdates()
        self._started = self._clock.monotonic()
        self._last_report = float("-inf")
        self._sent = 0
        self._total = 0
        # Set at the let-go: the VM as the destination holds it, and whether the files
        # this copy used go too.
        self._held: VmView | None = None
        self._remove = False

    @classmethod
    def prepare(cls, request: TransferRequest, vms: HostedVms, connect: FilesConnector) -> OutgoingTransfer:
        """Check the request and mark the VM as leaving; nothing is awaited here, so two
        requests for one VM cannot both pass."""
        config = vms.config
        check_request(request, config.name)
        vm = vms.operable(request.vm_id)
        if vm.migration_id:
            raise FailedPrecondition(
                f"VM {vm.label} is {vm.state.value} and already on the move (migration {vm.migration_id}); "
                "send it once that has ended"
            )
        if vm.lock.locked():
            raise FailedPrecondition(
                f"VM {vm.label} is {vm.state.value} and in the middle of another operation on host "
                f"{config.name}; send it once that has ended"
            )
        # The data disks are the files this host holds, whatever the caller last learned.
        request = replace(request, spec=replace(request.spec, data_disks=vm.spec.data_disks))
        check_sendable(request, vm.spec, vm.state, vm.lease_generation, config.name)
        check_can_leave(vm.spec, config.name)
        # A copy whose lease another host took is that host's VM: it is let go, not sent.
        vms.check_lease(vm)
        vm.migration_id = request.transfer_id
        log.info(
            "VM %s (%s): network transfer %s to %s (%s) begins",
            vm.label,
            vm.state.value,
            request.transfer_id,
            request.destination_host,
            request.destination_address,
        )
        return cls(vms, connect, vm, request)

    def progress(self) -> AsyncGenerator[TransferProgress, None]:
        return self._updates.follow()

    @property
    def outcome(self) -> TransferProgress | AgentError | None:
        return self._updates.outcome

    # The transfer

    async def run(self) -> None:
        vm = self.vm
        try:
            await self._transfer()
        except AgentError as exc:
            log.warning(
                "VM %s: network transfer %s failed: %s", vm.label, self.request.transfer_id, exc.message
            )
            self._updates.publish(exc)
        except asyncio.CancelledError:
            if self._held is None:
                self._updates.publish(
                    Unavailable(f"host {self._host_name} is stopping; VM {vm.label} stays on it as it was")
                )
            raise
        except Exception as exc:
            log.exception("VM %s: network transfer failed unexpectedly", vm.label)
            self._updates.publish(AgentError(f"the network transfer of VM {vm.label} failed: {exc}"))
        finally:
            if self._held is not None:
                # The VM is the destination's whatever happens from here: even cancelled,
                # the removal goes on in its thread and the caller learns the end.
                try:
                    await self._remove_old_files()
                finally:
                    self._updates.publish(self._final(self._held))
            # However it ended before the let-go (even cancelled before it began), the VM
            # is this host's again as it was.
            if vm.migration_id == self.request.transfer_id:
                vm.migration_id = ""

    async def _transfer(self) -> None:
        vm = self.vm
        async with vm.lock:
            if self._vms.hosted(vm.spec.id) is not vm:
                raise FailedPrecondition(
                    f"VM {vm.label} left host {self._host_name} before its transfer began"
                )
            await self._send_files()

    def _final(self, held: VmView) -> TransferProgress:
        request = self.request
        duration_ms = int((self._clock.monotonic() - self._started) * 1000)
        rate = rate_mb_per_s(self._sent, duration_ms / 1000)
        log.info(
            "VM %s: network transfer %s to %s completed: %.1f MB in %d ms (%.0f MB/s)",
            self.vm.label,
            request.transfer_id,
            request.destination_host,
            self._sent / MIB,
            duration_ms,
            rate,
        )
        return TransferProgress(self._sent, self._total, rate, vm=held, duration_ms=duration_ms)

    async def _send_files(self) -> None:
        """Stream the VM's files; once the destination answered with the VM it holds (the
        commit point), let this copy go."""
        vm, request = self.vm, self.request
        saved = b""
        if vm.state is PowerState.SAVED:
            saved = await asyncio.to_thread(self._vms.files.read_saved_state, vm.vm_dir)
        opened: list[DiskBlocks] = []
        try:
            disk = self._open(vm.disk, "virtual disk", opened)
            data_disks = [
                self._open(vm.vm_dir / d.file, f"data disk {d.file}", opened) for d in vm.spec.data_disks
            ]
            size = chunk_size(request.bandwidth_mb_per_s, self._vms.config.settings.migration_stall_timeout_s)
            spans = list(chunk_spans(await asyncio.to_thread(disk.extents), request.spec.disk_gb * GIB, size))
            data_spans = [
                list(chunk_spans(await asyncio.to_thread(d.extents), d.size, size)) for d in data_disks
            ]
            disk_bytes = sum(length for _, length in spans)
            data_disk_bytes = tuple(sum(length for _, length in each) for each in data_spans)
            self._total = disk_bytes + len(saved) + sum(data_disk_bytes)
            offer = FilesOffer(
                transfer_id=request.transfer_id,
                source_host=self._host_name,
                spec=request.spec,
                lease_generation=request.lease_generation,
                state=vm.state,
                disk_bytes=disk_bytes,
                saved_state_bytes=len(saved),
                cpu=vm.cpu if vm.state is PowerState.SAVED else None,
                data_disk_bytes=data_disk_bytes,
            )
            self._report(force=True)
            link = self._connect(request.destination_host, request.destination_address)
            try:
                await link.offer(offer)
                disk_digest = await self._send_disk(link, disk, spans)
                data_digests = [
                    await self._send_disk(link, data, each, index)
                    for index, (data, each) in enumerate(zip(data_disks, data_spans, strict=True))
                ]
                saved_digest = await self._send_saved_state(link, saved, size)
                await link.send(FilesEnd(disk_digest, saved_digest, tuple(data_digests)))
                held = await link.finish()
                # Before anything else is awaited (the stream's close included): a
                # cancellation from here on must not leave the VM on both hosts.
                self._let_go(held)
            finally:
                await link.close()
        finally:
            for blocks in opened:
                blocks.close()

    def _open(self, path: Path, what: str, opened: list[DiskBlocks]) -> DiskBlocks:
        try:
            blocks = self._vms.disks.open_blocks(path)
        except OSError as exc:
            raise StorageFault(
                f"the {what} of VM {self.vm.label} cannot be read on host {self._host_name}: {exc.strerror}"
            ) from None
        opened.append(blocks)
        return blocks

    async def _send_disk(
        self, link: FilesLink, disk: DiskBlocks, spans: list[tuple[int, int]], data_disk: int | None = None
    ) -> str:
        """A disk's chunks: the virtual disk's, or (`data_disk`) those of that data disk."""
        digest = FileDigest()
        reader = Prefetch(_disk_chunks(disk, spans, data_disk), READ_AHEAD_CHUNKS)
        try:
            while (chunk := await reader.get()) is not None:
                await self._send(link, chunk, digest)
        finally:
            await reader.close()  # the disk is closed after this: never under a read
        return digest.hexdigest()

    async def _send_saved_state(self, link: FilesLink, data: bytes, size: int) -> str:
        digest = FileDigest()
        for chunk in await asyncio.to_thread(_saved_state_chunks, data, size):
            await self._send(link, chunk, digest)
        return digest.hexdigest()

    async def _send(self, link: FilesLink, chunk: FileChunk, digest: FileDigest) -> None:
        digest.add(chunk)
        await link.send(chunk)
        self._sent += len(chunk.data)
        self._report()
        wait = pause_s(self._sent, self._clock.monotonic() - self._started, self.request.bandwidth_mb_per_s)
        if wait > 0:
            await asyncio.sleep(wait)

    def _report(self, force: bool = False) -> None:
        now = self._clock.monotonic()
        if not force and now - self._last_report < PROGRESS_INTERVAL_S:
            return
        self._last_report = now
        rate = rate_mb_per_s(self._sent, now - self._started)
        self._updates.publish(TransferProgress(self._sent, self._total, rate))

    # After the commit point

    def _let_go(self, held: VmView) -> None:
        """Drop this host's copy: the destination holds the VM. No await: nothing can
        find it half gone. Its files stop being a VM here first (vm.json goes)."""
        vm, vms = self.vm, self._vms
        self._held = held
        self._remove = self._files_are_ours()
        vm.migration_id = ""
        if self._remove:
            try:
                vms.files.remove_vm_config(vm.vm_dir)
            except OSError as exc:
                log.warning("VM %s: its configuration here cannot be removed: %s", vm.label, exc)
        if vms.hosted(vm.spec.id) is vm:
            vms.forget(vm)

    async def _remove_old_files(self) -> None:
        if self._remove:
            await asyncio.to_thread(self._vms.files.remove_vm_dir, self.vm.vm_dir)
        else:
            log.info(
                "VM %s: its files in %s are not this host's to remove; kept", self.vm.label, self.vm.vm_dir
            )

    def _files_are_ours(self) -> bool:
        """Whether the files this copy used may go: they are not the destination's, nor
        fenced by another host's newer lease (the way DeleteVm judges them)."""
        vm, files, name = self.vm, self._vms.files, self._host_name
        if (
            self.request.spec.storage == vm.spec.storage
            and vm.spec.storage.kind is not StorageKind.LOCAL_DISK
        ):
            return False  # the same shared directory: the destination's now
        try:
            _, owner = files.read_vm_config(vm.vm_dir)
            lease = files.read_lease(vm.vm_dir)
        except AgentError as exc:
            if vm.spec.storage.kind is not StorageKind.LOCAL_DISK:
                log.warning("VM %s: its files could not be read (%s); kept", vm.label, exc.message)
                return False
            return True
        return owner == name and not is_fenced(name, vm.lease_generation, lease)


def _disk_chunks(
    disk: DiskBlocks, spans: list[tuple[int, int]], data_disk: int | None
) -> Iterator[FileChunk]:
    """The disk's chunks, each with its CRC-32C. Each step runs in the executor, one after
    the other."""
    file = VmFile.DISK if data_disk is None else VmFile.DATA_DISK
    for offset, size in spans:
        data = disk.read(offset, size)
        if len(data) != size:
            raise StorageFault(f"the {file.label} ended at {offset + len(data)} while it was read")
        disk.release(offset, size)  # read once: no cache to keep
        yield FileChunk(file, offset, data, crc32c(data), data_disk or 0)


def _saved_state_chunks(data: bytes, size: int) -> list[FileChunk]:
    view = memoryview(data)
    chunks = []
    for offset in range(0, len(data), size):
        piece = bytes(view[offset : offset + size])
        chunks.append(FileChunk(VmFile.SAVED_STATE, offset, piece, crc32c(piece)))
    return chunks
