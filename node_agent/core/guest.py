"""The emulated guest: a memory image it dirties and a journal it appends to.

Memory is not resident. Each 4 KiB page is represented by a version number; its
bytes are derived from (vm id, page, version) whenever they are needed, so a 32 GiB
VM costs 32 MiB of versions and live migration can still move real, checkable bytes.
The model is deterministic (seeded per VM) and knows nothing of time or files: the
app calls `tick` with the elapsed interval and writes the journal records it returns.
"""

from __future__ import annotations

import hashlib
import math
import struct
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

from node_agent.core.errors import StorageFault
from node_agent.core.journal import JournalPosition
from node_agent.core.vm import Workload

PAGE_SIZE = 4096
PAGES_PER_MB = 256
_VERSION_TYPECODE = "I" if array("I").itemsize == 4 else "L"
assert array(_VERSION_TYPECODE).itemsize == 4
_BIG_ENDIAN = struct.pack("=I", 1) == struct.pack(">I", 1)

# memory.vsv: magic, format version, page count, length of the VM id; then the id,
# the SHA-256 of the versions, and the versions (little-endian uint32).
SAVED_STATE_MAGIC = b"HVSV"
SAVED_STATE_FORMAT = 1
_SAVED_HEADER = struct.Struct("<4sHQH")

# A guard, not a setting: validate_spec keeps rates far below it, but a VM config
# written before rates were bounded must not make one tick write without end.
MAX_JOURNAL_WRITES_PER_TICK = 100_000


class PageVersions:
    """The version of every page of a VM's memory image."""

    def __init__(self, pages: int, versions: array | None = None) -> None:
        if versions is None:
            versions = array(_VERSION_TYPECODE, bytes(4 * pages))
        if len(versions) != pages:
            raise ValueError(f"expected {pages} page versions, got {len(versions)}")
        self.versions = versions

    @property
    def pages(self) -> int:
        return len(self.versions)

    def bump(self, page: int) -> None:
        self.versions[page] = (self.versions[page] + 1) & 0xFFFFFFFF

    def bump_all(self, pages: Iterable[int]) -> None:
        """Bump each page listed, once per mention; the loop a busy guest runs every tick."""
        versions = self.versions
        for page in pages:
            versions[page] = (versions[page] + 1) & 0xFFFFFFFF

    def to_bytes(self) -> bytes:
        """The versions as little-endian uint32, whatever the machine's byte order."""
        if not _BIG_ENDIAN:
            return self.versions.tobytes()
        swapped = array(_VERSION_TYPECODE, self.versions)
        swapped.byteswap()
        return swapped.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> PageVersions:
        versions = array(_VERSION_TYPECODE)
        versions.frombytes(data)
        if _BIG_ENDIAN:
            versions.byteswap()
        return cls(len(versions), versions)

    def digest(self) -> str:
        """SHA-256 over the versions, hex: equal digests mean equal memory."""
        return hashlib.sha256(self.to_bytes()).hexdigest()


def page_bytes(vm_id: str, page: int, version: int) -> bytes:
    """The 4 KiB content of one page, derived from (vm id, page, version)."""
    key = hashlib.blake2b(vm_id.encode(), digest_size=32).digest()
    out = bytearray()
    for block in range(PAGE_SIZE // 64):
        h = hashlib.blake2b(struct.pack("<QIH", page, version, block), key=key, digest_size=64)
        out += h.digest()
    return bytes(out)


def encode_saved_state(vm_id: str, memory: PageVersions) -> bytes:
    """The bytes of memory.vsv for this memory image."""
    vid = vm_id.encode()
    body = memory.to_bytes()
    header = _SAVED_HEADER.pack(SAVED_STATE_MAGIC, SAVED_STATE_FORMAT, memory.pages, len(vid))
    return header + vid + hashlib.sha256(body).digest() + body


def decode_saved_state(vm_id: str, data: bytes) -> PageVersions:
    """Read memory.vsv back; raise StorageFault when it is not this VM's whole image."""
    size = _SAVED_HEADER.size
    if len(data) < size:
        raise StorageFault(f"the saved state of VM {vm_id} is truncated")
    magic, fmt, pages, id_len = _SAVED_HEADER.unpack(data[:size])
    if magic != SAVED_STATE_MAGIC or fmt != SAVED_STATE_FORMAT:
        raise StorageFault(f"the saved state of VM {vm_id} is not a havm memory image")
    stored_id = data[size : size + id_len].decode(errors="replace")
    if stored_id != vm_id:
        raise StorageFault(f"the saved state of VM {vm_id} belongs to VM {stored_id}")
    checksum = data[size + id_len : size + id_len + 32]
    body = data[size + id_len + 32 :]
    if len(body) != 4 * pages or hashlib.sha256(body).digest() != checksum:
        raise StorageFault(f"the saved state of VM {vm_id} is damaged")
    return PageVersions.from_bytes(body)


class PageChooser:
    """A deterministic stream of page numbers for one VM.

    BLAKE2b keyed by the VM id, run in counter mode: the same VM dirties the same
    pages in the same order on every machine, and each hash call yields 16 choices,
    so even the largest allowed rate costs little per tick.
    """

    _BLOCK = 64

    def __init__(self, vm_id: str) -> None:
        self._key = hashlib.blake2b(vm_id.encode(), digest_size=32).digest()
        self._counter = 0

    def choose(self, count: int, pages: int) -> array:
        """`count` page numbers, each below `pages`."""
        raw = array(_VERSION_TYPECODE)
        blocks = -(-count // (self._BLOCK // raw.itemsize))
        first, self._counter = self._counter, self._counter + blocks
        raw.frombytes(
            b"".join(
                hashlib.blake2b(n.to_bytes(8, "little"), key=self._key, digest_size=self._BLOCK).digest()
                for n in range(first, first + blocks)
            )
        )
        if _BIG_ENDIAN:
            raw.byteswap()
        del raw[count:]
        return array(_VERSION_TYPECODE, (word % pages for word in raw))


def _whole_and_carry(wanted: float, limit: int) -> tuple[int, float]:
    """Split `wanted` into what happens this tick (at most `limit`) and the fraction carried.

    Past the limit nothing is carried: the excess is dropped, so a huge or infinite
    rate costs one bounded tick after another instead of an ever-growing backlog.
    """
    if not math.isfinite(wanted) or wanted >= limit:
        return max(limit, 0), 0.0
    whole = max(int(wanted), 0)
    return whole, wanted - whole


@dataclass(frozen=True)
class TickResult:
    """What one tick did: pages dirtied and the journal seqs now to be written."""

    pages_dirtied: int
    journal_seqs: range


class GuestModel:
    """A running guest's behaviour, advanced one tick at a time."""

    def __init__(
        self,
        vm_id: str,
        memory: PageVersions,
        workload: Workload,
        journal: JournalPosition,
    ) -> None:
        self.vm_id = vm_id
        self.memory = memory
        self.workload = workload
        self.journal = journal
        self._chooser = PageChooser(vm_id)
        # Fractions carried between ticks so that low rates still happen on average.
        self._dirty_carry = 0.0
        self._journal_carry = 0.0

    @classmethod
    def fresh_boot(cls, vm_id: str, pages: int, workload: Workload, journal: JournalPosition) -> GuestModel:
        return cls(vm_id, PageVersions(pages), workload, journal)

    def tick(self, dt_s: float) -> TickResult:
        """Advance the guest by `dt_s` seconds: dirty pages, plan journal writes."""
        pages = self.memory.pages
        dirty, self._dirty_carry = _whole_and_carry(
            self._dirty_carry + self.workload.dirty_rate_mb_per_s * dt_s * PAGES_PER_MB, pages
        )
        self.memory.bump_all(self._chooser.choose(dirty, pages))
        writes, self._journal_carry = _whole_and_carry(
            self._journal_carry + self.workload.journal_writes_per_s * dt_s, MAX_JOURNAL_WRITES_PER_TICK
        )
        first = self.journal.next_seq
        return TickResult(pages_dirtied=dirty, journal_seqs=range(first, first + writes))

    def acknowledge(self, seq: int) -> None:
        """Record that the write of `seq` reached the disk."""
        if seq != self.journal.next_seq:
            raise ValueError(f"journal write {seq} acknowledged out of order")
        self.journal = JournalPosition(last_seq=seq, writes=self.journal.writes + 1)
