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
import zlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from node_agent.core.cpu import GuestCpu
from node_agent.core.errors import Corrupted, StorageFault
from node_agent.core.journal import JournalPosition
from node_agent.core.vm import Workload

PAGE_SIZE = 4096
PAGES_PER_MB = 256
_VERSION_TYPECODE: Literal["I", "L"] = "I" if array("I").itemsize == 4 else "L"
assert array(_VERSION_TYPECODE).itemsize == 4
_BIG_ENDIAN = struct.pack("=I", 1) == struct.pack(">I", 1)

# memory.vsv: magic, format version, page count, length of the VM id; then the id,
# (format 2) the length and text of the guest's processor, "vendor:feature,feature",
# the SHA-256 of the versions, and the versions (little-endian uint32).
SAVED_STATE_MAGIC = b"HVSV"
SAVED_STATE_FORMAT = 2
_READABLE_FORMATS = (1, 2)
_SAVED_HEADER = struct.Struct("<4sHQH")
_CPU_LENGTH = struct.Struct("<H")

# A guard, not a setting: validate_spec keeps rates far below it, but a VM config
# written before rates were bounded must not make one tick write without end.
MAX_JOURNAL_WRITES_PER_TICK = 100_000


class PageVersions:
    """The version of every page of a VM's memory image."""

    def __init__(self, pages: int, versions: array[int] | None = None) -> None:
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


# Each page on the wire: its number and version (little-endian uint32 each), then a
# body derived from the VM id alone, so that building and checking a 1 MiB chunk is
# a copy and a compare instead of a hash per page.
PAGE_HEADER_SIZE = 8
_WORDS_PER_PAGE = PAGE_SIZE // 4


class PageCodec:
    """The bytes of a VM's memory pages on the wire, and their check on arrival."""

    def __init__(self, vm_id: str) -> None:
        key = hashlib.blake2b(vm_id.encode(), digest_size=32).digest()
        body = b"".join(
            hashlib.blake2b(n.to_bytes(4, "little"), key=key, digest_size=64).digest()
            for n in range(PAGE_SIZE // 64)
        )
        self.vm_id = vm_id
        self._blank_page = bytes(PAGE_HEADER_SIZE) + body[: PAGE_SIZE - PAGE_HEADER_SIZE]

    def encode(self, pages: array[int], versions: array[int]) -> bytearray:
        """`len(pages)` pages of 4096 bytes, in order; `versions` holds each one's version."""
        data = bytearray(self._blank_page * len(pages))
        words = memoryview(data).cast(_VERSION_TYPECODE)
        words[0::_WORDS_PER_PAGE] = _little_endian(pages)
        words[1::_WORDS_PER_PAGE] = _little_endian(versions)
        return data

    def decode(self, pages: array[int], data: bytes, crc32: int) -> array[int]:
        """The versions of the pages in `data`; raise Corrupted unless every byte checks out.

        Purely computational: the checksum, each page's header against the page list,
        and each body against what this VM's pages hold.
        """
        if zlib.crc32(data) != crc32:
            raise Corrupted(f"memory of VM {self.vm_id} arrived damaged (CRC-32 mismatch)")
        if len(data) != PAGE_SIZE * len(pages):
            raise Corrupted(
                f"memory of VM {self.vm_id}: {len(data)} bytes arrived for {len(pages)} pages of {PAGE_SIZE}"
            )
        words = memoryview(data).cast(_VERSION_TYPECODE)
        numbers = _from_little_endian(array(_VERSION_TYPECODE, words[0::_WORDS_PER_PAGE]))
        if numbers != pages:
            raise Corrupted(f"memory of VM {self.vm_id}: the page headers do not match the page list")
        versions = _from_little_endian(array(_VERSION_TYPECODE, words[1::_WORDS_PER_PAGE]))
        if self.encode(pages, versions) != data:
            raise Corrupted(f"memory of VM {self.vm_id}: a page body is not this VM's")
        return versions


def _little_endian(values: array[int]) -> array[int]:
    if not _BIG_ENDIAN:
        return values
    swapped = array(_VERSION_TYPECODE, values)
    swapped.byteswap()
    return swapped


_from_little_endian = _little_endian


def page_bytes(vm_id: str, page: int, version: int) -> bytes:
    """The 4 KiB content of one page, derived from (vm id, page, version)."""
    one = array(_VERSION_TYPECODE, [page])
    return bytes(PageCodec(vm_id).encode(one, array(_VERSION_TYPECODE, [version])))


def page_array(pages: Iterable[int]) -> array[int]:
    """Page numbers (or versions) in the compact form the codec takes."""
    return array(_VERSION_TYPECODE, pages)


def encode_saved_state(vm_id: str, memory: PageVersions, cpu: GuestCpu | None = None) -> bytes:
    """The bytes of memory.vsv for this memory image and the processor its guest sees."""
    vid = vm_id.encode()
    body = memory.to_bytes()
    header = _SAVED_HEADER.pack(SAVED_STATE_MAGIC, SAVED_STATE_FORMAT, memory.pages, len(vid))
    cpu_text = b"" if cpu is None else f"{cpu.vendor}:{','.join(cpu.features)}".encode()
    return header + vid + _CPU_LENGTH.pack(len(cpu_text)) + cpu_text + hashlib.sha256(body).digest() + body


def saved_state_size_limit(pages: int) -> int:
    """The most bytes memory.vsv of a VM with `pages` pages of memory can take: the body,
    and a header whose VM id and processor text are each at most what their length field holds."""
    most_text = 0xFFFF
    return _SAVED_HEADER.size + most_text + _CPU_LENGTH.size + most_text + 32 + 4 * pages


@dataclass(frozen=True)
class SavedState:
    memory: PageVersions
    # None in an image written before the processor was recorded.
    cpu: GuestCpu | None


def decode_saved_state(vm_id: str, data: bytes) -> PageVersions:
    """Read memory.vsv back; raise StorageFault when it is not this VM's whole image."""
    return decode_saved_state_with_cpu(vm_id, data).memory


def decode_saved_state_with_cpu(vm_id: str, data: bytes) -> SavedState:
    """Read memory.vsv back with the guest's processor; raise StorageFault when damaged."""
    size = _SAVED_HEADER.size
    if len(data) < size:
        raise StorageFault(f"the saved state of VM {vm_id} is truncated")
    magic, fmt, pages, id_len = _SAVED_HEADER.unpack(data[:size])
    if magic != SAVED_STATE_MAGIC or fmt not in _READABLE_FORMATS:
        raise StorageFault(f"the saved state of VM {vm_id} is not a havm memory image")
    stored_id = data[size : size + id_len].decode(errors="replace")
    if stored_id != vm_id:
        raise StorageFault(f"the saved state of VM {vm_id} belongs to VM {stored_id}")
    at = size + id_len
    cpu = None
    if fmt >= 2:
        if len(data) < at + _CPU_LENGTH.size:
            raise StorageFault(f"the saved state of VM {vm_id} is truncated")
        (cpu_len,) = _CPU_LENGTH.unpack(data[at : at + _CPU_LENGTH.size])
        at += _CPU_LENGTH.size
        cpu = _cpu_from_text(data[at : at + cpu_len].decode(errors="replace"))
        at += cpu_len
    checksum = data[at : at + 32]
    body = data[at + 32 :]
    if len(body) != 4 * pages or hashlib.sha256(body).digest() != checksum:
        raise StorageFault(f"the saved state of VM {vm_id} is damaged")
    return SavedState(PageVersions.from_bytes(body), cpu)


def _cpu_from_text(text: str) -> GuestCpu | None:
    if not text:
        return None
    vendor, _, features = text.partition(":")
    return GuestCpu(vendor, tuple(f for f in features.split(",") if f))


class PageChooser:
    """A deterministic stream of page numbers for one VM.

    BLAKE2b keyed by the VM id, run in counter mode: the same VM dirties the same
    pages in the same order on every machine, and each hash call yields 16 choices,
    so even the largest allowed rate costs little per tick.
    """

    _BLOCK = 64

    def __init__(self, vm_id: str, counter: int = 0) -> None:
        self._key = hashlib.blake2b(vm_id.encode(), digest_size=32).digest()
        self._counter = counter

    @property
    def counter(self) -> int:
        """Where the stream is: a chooser made with it continues the same sequence."""
        return self._counter

    def choose(self, count: int, pages: int) -> array[int]:
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
class GuestDevices:
    """What a paused guest holds besides memory: enough to continue it elsewhere."""

    journal: JournalPosition
    chooser_counter: int
    dirty_carry: float
    journal_carry: float


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
        # Pages dirtied since the last take_dirty, while a live migration tracks them.
        self._dirty: set[int] | None = None

    @classmethod
    def fresh_boot(cls, vm_id: str, pages: int, workload: Workload, journal: JournalPosition) -> GuestModel:
        return cls(vm_id, PageVersions(pages), workload, journal)

    @classmethod
    def resumed(
        cls, vm_id: str, memory: PageVersions, workload: Workload, devices: GuestDevices
    ) -> GuestModel:
        """A guest continuing exactly where another copy of it was paused."""
        guest = cls(vm_id, memory, workload, devices.journal)
        guest._chooser = PageChooser(vm_id, devices.chooser_counter)
        guest._dirty_carry = devices.dirty_carry
        guest._journal_carry = devices.journal_carry
        return guest

    def devices(self) -> GuestDevices:
        return GuestDevices(self.journal, self._chooser.counter, self._dirty_carry, self._journal_carry)

    # Dirty-page tracking: on for the pre-copy passes of a live migration.

    def track_dirty(self) -> None:
        self._dirty = set()

    def take_dirty(self) -> set[int]:
        """The pages dirtied since tracking began or since the last call; tracking goes on."""
        if self._dirty is None:
            raise ValueError("dirty pages are not being tracked")
        dirty, self._dirty = self._dirty, set()
        return dirty

    def stop_tracking(self) -> None:
        self._dirty = None

    @property
    def tracking(self) -> bool:
        return self._dirty is not None

    def tick(self, dt_s: float) -> TickResult:
        """Advance the guest by `dt_s` seconds: dirty pages, plan journal writes."""
        pages = self.memory.pages
        dirty, self._dirty_carry = _whole_and_carry(
            self._dirty_carry + self.workload.dirty_rate_mb_per_s * dt_s * PAGES_PER_MB, pages
        )
        chosen = self._chooser.choose(dirty, pages)
        self.memory.bump_all(chosen)
        if self._dirty is not None:
            self._dirty.update(chosen)
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
