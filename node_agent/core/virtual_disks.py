"""The virtual disk port: a VM's disk as its guest and the copies of its files use it.

A running guest writes its journal into the VM's virtual disk; a live migration or a
storage move copies the disk's journal region block by block, a network transfer
copies the regions ever written, and an idle VM's journal position is found by
scanning its disk. Behind this port they are sparse
files today (adapters.files); the app decides when a disk is opened, copied or
scanned, never how.

The port is generic in `Where`, the type that locates a disk, because core knows no
file paths: the app, which does, uses `VirtualDisks[Path]`.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from node_agent.core.journal import JournalPosition

# Contravariant: the port only takes places, it never hands one out.
Where = TypeVar("Where", contravariant=True)


class GuestJournal(Protocol):
    """The journal region of an open virtual disk, as its guest writes it."""

    @property
    def disk_bytes(self) -> int:
        """The size of the disk: how many records the journal can hold."""
        ...

    def scan(self) -> JournalPosition: ...

    def write(self, seq: int, record: bytes) -> None:
        """Write one record; once this returns the write is acknowledged."""
        ...

    def close(self) -> None: ...


class DiskBlocks(Protocol):
    """Raw access to an open virtual disk, for copying it while or after its guest writes."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...
    def write(self, offset: int, data: bytes) -> None: ...
    def extents(self) -> list[tuple[int, int]]:
        """The regions ever written, as (offset, length) in ascending order; the rest reads
        as zeros. Where the storage cannot tell, the whole disk is one region."""
        ...

    def sync(self) -> None: ...
    def release(self, offset: int, length: int) -> None:
        """The bytes at `offset` were read or synced for a copy and will not be read again
        soon: their cached pages may go."""
        ...

    def close(self) -> None: ...


class VirtualDisks(Protocol[Where]):
    """Opening and scanning the virtual disks of this host's VMs.

    Opening or scanning a disk that is missing or unreadable raises OSError.
    """

    @property
    def disk_name(self) -> str:
        """The name of a VM's virtual disk in the VM's directory."""
        ...

    def open_journal(self, disk: Where) -> GuestJournal:
        """Open an existing disk for its guest's journal writes."""
        ...

    def open_blocks(self, disk: Where, create_bytes: int | None = None) -> DiskBlocks:
        """Open a disk for a block copy; with `create_bytes`, create it (sparse) at that size."""
        ...

    def scan_journal(self, disk: Where) -> JournalPosition:
        """Where the journal of a disk no guest writes to ends."""
        ...
