"""The guest's journal: fixed-size, sequence-numbered, checksummed records.

The journal lives inside the VM's virtual disk, record `seq` at offset
`seq * RECORD_SIZE` (offset 0 stays unused so that seq 0 means "nothing written").
Tests use it to prove that migrations and failovers keep exactly the acknowledged
writes, so a record must be self-validating: a torn or stale record never counts.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from node_agent.core.errors import StorageFault

RECORD_SIZE = 64
MAGIC = b"HVJ1"
# magic, seq, generation, unix-ns timestamp, padding; the CRC32 of it all follows.
_BODY = struct.Struct("<4sQQQ32x")
_CRC = struct.Struct("<I")
assert _BODY.size + _CRC.size == RECORD_SIZE
# How many records a scan reads at once.
SCAN_BATCH = 1024


@dataclass(frozen=True)
class JournalRecord:
    seq: int
    generation: int
    timestamp_ns: int


@dataclass(frozen=True)
class JournalPosition:
    """Where a journal ends: the last acknowledged seq and how many records are valid."""

    last_seq: int = 0
    writes: int = 0

    @property
    def next_seq(self) -> int:
        return self.last_seq + 1


def record_offset(seq: int) -> int:
    if seq < 1:
        raise ValueError(f"journal sequence numbers start at 1, got {seq}")
    return seq * RECORD_SIZE


def encode_record(record: JournalRecord) -> bytes:
    body = _BODY.pack(MAGIC, record.seq, record.generation, record.timestamp_ns)
    return body + _CRC.pack(zlib.crc32(body))


def decode_record(data: bytes) -> JournalRecord | None:
    """Return the record, or None when the bytes are not a whole, valid record."""
    if len(data) != RECORD_SIZE:
        return None
    body = data[: _BODY.size]
    (crc,) = _CRC.unpack(data[_BODY.size :])
    if zlib.crc32(body) != crc:
        return None
    magic, seq, generation, timestamp_ns = _BODY.unpack(body)
    if magic != MAGIC:
        return None
    return JournalRecord(seq=seq, generation=generation, timestamp_ns=timestamp_ns)


def journal_region_end(position: JournalPosition) -> int:
    """The bytes of a disk that hold its journal up to `position` (slot 0 included)."""
    return (position.last_seq + 1) * RECORD_SIZE


def max_records(disk_bytes: int) -> int:
    """The highest seq a disk of this size can hold."""
    return disk_bytes // RECORD_SIZE - 1


def scan_journal(read_at: Callable[[int, int], bytes], disk_bytes: int) -> JournalPosition:
    """Find the end of a journal: the last record of the unbroken run from seq 1.

    `read_at(offset, length)` returns the disk's bytes (fewer at its end). The run
    stops at the first slot that is empty, torn or holds the wrong seq; the next
    write goes right after it, overwriting whatever was torn.
    """
    limit = max_records(disk_bytes)
    seq = 1
    while seq <= limit:
        count = min(SCAN_BATCH, limit - seq + 1)
        chunk = read_at(record_offset(seq), count * RECORD_SIZE)
        for i in range(count):
            record = decode_record(chunk[i * RECORD_SIZE : (i + 1) * RECORD_SIZE])
            if record is None or record.seq != seq:
                return JournalPosition(last_seq=seq - 1, writes=seq - 1)
            seq += 1
    return JournalPosition(last_seq=seq - 1, writes=seq - 1)


def check_room(position: JournalPosition, disk_bytes: int, vm_label: str) -> None:
    if position.next_seq > max_records(disk_bytes):
        raise StorageFault(f"the journal of VM {vm_label} has filled its virtual disk")
