"""Network transfer of a VM at rest: the stream from source to destination, and the
checks both ends make of it.

A stopped or saved VM moves to a host that does not see its storage by having its
files streamed agent to agent: an offer, chunks of the virtual disk's written extents
and of the saved memory image (each with a CRC-32C), then an end with a digest per
file (`FileDigest`). The destination holds the VM only once everything arrived and
checked out, so the source keeps it whole until then. Here are the vocabulary and the
decisions (what a well-formed request, offer and chunk are, when the figures agree,
how fast a capped source may go); the app reads, checks, sends and writes.
"""

from __future__ import annotations

import enum
import hashlib
import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from node_agent.core.cpu import GuestCpu
from node_agent.core.errors import Corrupted, FailedPrecondition, InvalidArgument
from node_agent.core.guest import saved_state_size_limit
from node_agent.core.power import PowerState
from node_agent.core.views import VmView
from node_agent.core.vm import GIB, VmSpec

MIB = 1024 * 1024
# File bytes per chunk message: fewer messages, fewer hand-overs between the event loop
# and the executor. Measured by bench/transfer.py (4 GiB of written disk, mutual TLS):
# 8 MiB chunks ran about 20 % faster than 4 MiB ones; 16 MiB added 2 % for twice the
# buffers.
CHUNK_BYTES = 8 * MIB
# The smallest chunk a capped stream is cut into (see `chunk_size`).
MIN_CHUNK_BYTES = 64 * 1024
# How many chunks a source reads ahead of the stream, and how many a destination holds
# queued to write: enough to ride out a hiccup on either side, 32 MiB each.
READ_AHEAD_CHUNKS = 4
WRITE_BEHIND_CHUNKS = 4
# A caller following a transfer hears of its progress at most this often.
PROGRESS_INTERVAL_S = 0.1
# The states a VM may leave in by network transfer: its files are all there is of it.
AT_REST = frozenset({PowerState.STOPPED, PowerState.SAVED})


class VmFile(enum.Enum):
    """Which of a VM's files a chunk belongs to."""

    DISK = "disk"  # only its written extents travel; the rest reads as zeros
    SAVED_STATE = "saved_state"  # the memory image of a saved VM
    DATA_DISK = "data_disk"  # one of its data disks (the chunk says which), as the disk

    @property
    def label(self) -> str:
        return {"disk": "virtual disk", "saved_state": "saved state", "data_disk": "data disk"}[self.value]


@dataclass(frozen=True)
class TransferRequest:
    """SendVm: what the manager asks the source to do."""

    vm_id: str
    transfer_id: str
    destination_host: str
    destination_address: str
    # The VM as the destination will hold it (its storage there, its HA flag).
    spec: VmSpec
    lease_generation: int
    bandwidth_mb_per_s: float  # 0: no cap


@dataclass(frozen=True)
class TransferProgress:
    bytes_sent: int
    bytes_total: int
    mb_per_s: float
    # On the last update only: the VM as the destination holds it.
    vm: VmView | None = None
    duration_ms: int = 0


# Messages of the stream from the source to the destination.


@dataclass(frozen=True)
class FilesOffer:
    transfer_id: str
    source_host: str
    spec: VmSpec
    lease_generation: int
    state: PowerState
    disk_bytes: int
    saved_state_bytes: int
    # A saved VM: the processor its guest sees; None for a stopped one (or an old image).
    cpu: GuestCpu | None
    # The extent bytes that follow for each of spec.data_disks, in their order.
    data_disk_bytes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class FileChunk:
    file: VmFile
    offset: int
    data: bytes
    crc32c: int
    # VmFile.DATA_DISK: which of spec.data_disks.
    data_disk: int = 0


@dataclass(frozen=True)
class FilesEnd:
    """Each file's `FileDigest`, as hex."""

    disk_digest: str
    saved_state_digest: str
    data_disk_digests: tuple[str, ...] = ()


TransferMessage = FilesOffer | FileChunk | FilesEnd


# A chunk as its file's digest takes it in: offset, length, CRC-32C.
_CHUNK_RECORD = struct.Struct(">QQI")


class FileDigest:
    """The end digest of one file: SHA-256 over the (offset, length, CRC-32C) of each of its
    chunks, in the order sent.

    Each chunk's CRC-32C vouches for its bytes, and this for the chunks as a whole: one
    missing, duplicated, reordered, moved or changed together with its CRC-32C gives
    another digest. A SHA-256 over the bytes themselves would add little to that and
    cost a pass over every byte on each side, about as much as the rest of the copy on
    a 2-core host; this costs a few bytes of hashing per chunk. Both sides compute it
    from the figures the chunk carries, the destination before it checked the CRC-32C:
    a chunk that fails that check fails the transfer before its end is judged.
    """

    __slots__ = ("_sha256",)

    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()

    def add(self, chunk: FileChunk) -> None:
        self._sha256.update(_CHUNK_RECORD.pack(chunk.offset, len(chunk.data), chunk.crc32c))

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


# The source's decisions.


def check_request(request: TransferRequest, host_name: str) -> None:
    """The fields of a SendVm request, before the VM is looked at. Purely computational."""
    if not request.vm_id:
        raise InvalidArgument("vm_id: is required")
    if not request.transfer_id:
        raise InvalidArgument("transfer_id: is required")
    if not request.destination_host or not request.destination_address:
        raise InvalidArgument("destination_host and destination_address: are required")
    if request.destination_host == host_name:
        raise InvalidArgument(f"destination_host: VM {request.vm_id} is already on host {host_name}")
    if request.spec.id != request.vm_id:
        raise InvalidArgument(
            f"spec.id: {request.spec.id!r} is not the VM sent ({request.vm_id}); the spec is that VM's "
            "as the destination will hold it"
        )
    if not (math.isfinite(request.bandwidth_mb_per_s) and request.bandwidth_mb_per_s >= 0):
        raise InvalidArgument(
            f"bandwidth_mb_per_s: must be a finite number, 0 or more, got {request.bandwidth_mb_per_s:g}"
        )


def check_sendable(
    request: TransferRequest, spec: VmSpec, state: PowerState, held_generation: int, host_name: str
) -> None:
    """Whether this host's VM (`spec`, in `state`, holding `held_generation`) may leave as asked.

    Purely computational; the lease on storage and the VM's lock are the app's to check.
    """
    label = spec.label
    if state not in AT_REST:
        raise FailedPrecondition(
            f"VM {label} is {state.value}; only a stopped or saved VM can be sent to another host "
            "(save or stop it first)"
        )
    if request.lease_generation <= held_generation:
        raise FailedPrecondition(
            f"lease_generation: {request.lease_generation} must be newer than the generation "
            f"{held_generation} that VM {label} holds on host {host_name}"
        )
    if request.spec.disk_gb < spec.disk_gb:
        raise InvalidArgument(
            f"spec.disk_gb: the disk of VM {label} is {spec.disk_gb} GB; its copy cannot be "
            f"{request.spec.disk_gb} GB"
        )
    if state is PowerState.SAVED and request.spec.memory_mb != spec.memory_mb:
        raise InvalidArgument(
            f"spec.memory_mb: VM {label} is saved with {spec.memory_mb} MB of memory; its memory "
            f"image cannot become {request.spec.memory_mb} MB"
        )


def chunk_spans(
    extents: Iterable[tuple[int, int]], limit: int, chunk_bytes: int
) -> Iterator[tuple[int, int]]:
    """The extents (offset, length) below `limit`, cut into chunks of at most `chunk_bytes`."""
    for offset, length in extents:
        end = min(offset + length, limit)
        while offset < end:
            size = min(chunk_bytes, end - offset)
            yield offset, size
            offset += size


def chunk_size(bandwidth_mb_per_s: float, stall_timeout_s: float) -> int:
    """CHUNK_BYTES, or less on a stream capped so low that one chunk would take more than a
    quarter of the stall timeout: the destination would wait for the next as for a source
    that fell silent. Purely computational."""
    if bandwidth_mb_per_s <= 0:
        return CHUNK_BYTES
    fits = int(bandwidth_mb_per_s * MIB * stall_timeout_s / 4) // 4096 * 4096
    return max(MIN_CHUNK_BYTES, min(CHUNK_BYTES, fits))


def pause_s(sent_bytes: int, elapsed_s: float, bandwidth_mb_per_s: float) -> float:
    """How long a capped sender waits before its next chunk so as to keep to its cap; 0
    when it is behind or uncapped. Purely computational."""
    if bandwidth_mb_per_s <= 0:
        return 0.0
    return max(0.0, sent_bytes / (bandwidth_mb_per_s * MIB) - elapsed_s)


def rate_mb_per_s(sent_bytes: int, elapsed_s: float) -> float:
    return sent_bytes / elapsed_s / MIB if elapsed_s > 0 else 0.0


# The destination's decisions.


def check_offer(offer: FilesOffer) -> None:
    """The fields of an offer, before the host looks at the VM. Purely computational."""
    spec = offer.spec
    if not offer.transfer_id:
        raise InvalidArgument("offer.transfer_id: is required")
    if not offer.source_host:
        raise InvalidArgument("offer.source_host: is required")
    if offer.state not in AT_REST:
        raise InvalidArgument(
            f"offer.state: a VM arrives by network transfer stopped or saved, not {offer.state.value}"
        )
    if offer.lease_generation <= 0:
        raise InvalidArgument(f"offer.lease_generation: must be positive, got {offer.lease_generation}")
    disk_size = spec.disk_gb * GIB
    if not 0 <= offer.disk_bytes <= disk_size:
        raise InvalidArgument(
            f"offer.disk_bytes: {offer.disk_bytes} does not fit the {spec.disk_gb} GB disk of VM {spec.label}"
        )
    if len(offer.data_disk_bytes) != len(spec.data_disks):
        raise InvalidArgument(
            f"offer.data_disk_bytes: {len(offer.data_disk_bytes)} figures for the "
            f"{len(spec.data_disks)} data disks of VM {spec.label}"
        )
    for i, (data, size) in enumerate(zip(spec.data_disks, offer.data_disk_bytes, strict=True)):
        if not 0 <= size <= data.size_bytes:
            raise InvalidArgument(
                f"offer.data_disk_bytes[{i}]: {size} does not fit data disk {data.file} of "
                f"{data.size_bytes} bytes"
            )
    if offer.state is PowerState.STOPPED and offer.saved_state_bytes != 0:
        raise InvalidArgument("offer.saved_state_bytes: a stopped VM has no saved state")
    limit = saved_state_size_limit(spec.memory_pages)
    if offer.state is PowerState.SAVED and not 0 < offer.saved_state_bytes <= limit:
        raise InvalidArgument(
            f"offer.saved_state_bytes: the saved state of VM {spec.label} with {spec.memory_mb} MB of memory "
            f"takes 1 to {limit} bytes, not {offer.saved_state_bytes}"
        )


class _ExtentFile:
    """What has arrived of a disk (the virtual disk or a data disk): its written extents in
    ascending offsets without overlap, within its size and the bytes offered."""

    def __init__(self, label: str, size: int, offered: int) -> None:
        self.label = label
        self.size = size
        self.offered = offered
        self.received = 0
        self._end = 0  # where the last chunk ended: the next starts there or beyond
        self.digest = FileDigest()

    def admit(self, chunk: FileChunk, at: str) -> None:
        size, offset = len(chunk.data), chunk.offset
        if offset < self._end:
            raise InvalidArgument(
                f"chunk.offset: the {at} overlaps the chunk before it, which ended at {self._end}"
            )
        if offset + size > self.size:
            raise InvalidArgument(f"chunk.offset: the {at} ({size} bytes) ends beyond the {self.label}")
        if self.received + size > self.offered:
            raise InvalidArgument(
                f"chunk.data: the {at} goes beyond the {self.offered} bytes offered for the {self.label}"
            )
        self.received += size
        self._end = offset + size
        self.digest.add(chunk)


class ReceivedFiles:
    """What has arrived of each file, against the offer: chunks in order, within bounds,
    and each file's digest so far.

    Purely computational. Disk and data disk chunks come in ascending offsets without
    overlap, saved state chunks one after the other from 0; none may exceed what the
    offer said.
    """

    def __init__(self, offer: FilesOffer) -> None:
        self._offer = offer
        spec = offer.spec
        self._disk = _ExtentFile(f"{spec.disk_gb} GB disk", spec.disk_gb * GIB, offer.disk_bytes)
        self._data_disks = [
            _ExtentFile(f"data disk {d.file}", d.size_bytes, offered)
            for d, offered in zip(spec.data_disks, offer.data_disk_bytes, strict=True)
        ]
        self.saved_state_bytes = 0
        self._saved_state_digest = FileDigest()

    @property
    def disk_bytes(self) -> int:
        return self._disk.received

    @property
    def bytes_received(self) -> int:
        return self._disk.received + self.saved_state_bytes + sum(d.received for d in self._data_disks)

    def admit(self, chunk: FileChunk) -> None:
        """Raise InvalidArgument naming the field if `chunk` does not belong where it says."""
        size, offset, offer = len(chunk.data), chunk.offset, self._offer
        at = f"chunk of the {chunk.file.label} at offset {offset}"
        if size == 0:
            raise InvalidArgument(f"chunk.data: the {at} is empty")
        if chunk.file is VmFile.DISK:
            self._disk.admit(chunk, at)
            return
        if chunk.file is VmFile.DATA_DISK:
            if not 0 <= chunk.data_disk < len(self._data_disks):
                raise InvalidArgument(
                    f"chunk.data_disk: VM {offer.spec.label} has {len(self._data_disks)} data disks, "
                    f"none numbered {chunk.data_disk}"
                )
            self._data_disks[chunk.data_disk].admit(chunk, f"{at} (data disk {chunk.data_disk})")
            return
        if offer.state is not PowerState.SAVED:
            raise InvalidArgument(f"chunk.file: VM {offer.spec.label} is stopped; it has no saved state")
        if offset != self.saved_state_bytes:
            raise InvalidArgument(
                f"chunk.offset: the {at} must follow the {self.saved_state_bytes} bytes received"
            )
        if offset + size > offer.saved_state_bytes:
            raise InvalidArgument(
                f"chunk.data: the {at} goes beyond the {offer.saved_state_bytes} saved state bytes offered"
            )
        self.saved_state_bytes += size
        self._saved_state_digest.add(chunk)

    def check_complete(self, end: FilesEnd) -> None:
        """At the end: every byte offered arrived, and each file's digest is the source's.
        Each chunk's CRC-32C must have been checked by then."""
        offer = self._offer
        if self._disk.received != offer.disk_bytes:
            raise InvalidArgument(
                f"end: {self._disk.received} disk bytes arrived, the offer announced {offer.disk_bytes}"
            )
        for data in self._data_disks:
            if data.received != data.offered:
                raise InvalidArgument(
                    f"end: {data.received} bytes of {data.label} arrived, the offer announced {data.offered}"
                )
        if self.saved_state_bytes != offer.saved_state_bytes:
            raise InvalidArgument(
                f"end: {self.saved_state_bytes} saved state bytes arrived, the offer announced "
                f"{offer.saved_state_bytes}"
            )
        if len(end.data_disk_digests) != len(self._data_disks):
            raise InvalidArgument(
                f"end.data_disk_digests: {len(end.data_disk_digests)} digests for "
                f"{len(self._data_disks)} data disks"
            )
        files = [
            ("virtual disk", self._disk.received, self._disk.digest, end.disk_digest),
            ("saved state", self.saved_state_bytes, self._saved_state_digest, end.saved_state_digest),
        ]
        files += [
            (data.label, data.received, data.digest, sent)
            for data, sent in zip(self._data_disks, end.data_disk_digests, strict=True)
        ]
        for label, size, received, sent in files:
            # A file of which nothing travels may go without a digest.
            if received.hexdigest() != sent.lower() and (size or sent):
                raise Corrupted(
                    f"the {label} of VM {offer.spec.label} arrived different from the source's "
                    "(end digest mismatch)"
                )
