"""The emulated guest: its memory image, its journal records, its saved state."""

from __future__ import annotations

import pytest

from node_agent.core.errors import StorageFault
from node_agent.core.guest import (
    MAX_JOURNAL_WRITES_PER_TICK,
    PAGE_SIZE,
    GuestModel,
    PageChooser,
    PageVersions,
    decode_saved_state,
    encode_saved_state,
    page_bytes,
)
from node_agent.core.journal import (
    RECORD_SIZE,
    JournalPosition,
    JournalRecord,
    decode_record,
    encode_record,
    record_offset,
    scan_journal,
)
from node_agent.core.vm import Workload


def test_record_round_trip() -> None:
    record = JournalRecord(seq=42, generation=3, timestamp_ns=1_795_000_000_000_000_000)
    data = encode_record(record)
    assert len(data) == RECORD_SIZE
    assert decode_record(data) == record


@pytest.mark.parametrize("position", [0, 4, 12, 30, 63])
def test_a_flipped_bit_invalidates_the_record(position: int) -> None:
    data = bytearray(encode_record(JournalRecord(7, 0, 123)))
    data[position] ^= 0x01
    assert decode_record(bytes(data)) is None


def test_empty_and_short_slots_are_not_records() -> None:
    assert decode_record(bytes(RECORD_SIZE)) is None
    assert decode_record(encode_record(JournalRecord(1, 0, 1))[:-1]) is None


def test_seq_zero_has_no_slot() -> None:
    with pytest.raises(ValueError):
        record_offset(0)
    assert record_offset(1) == RECORD_SIZE


def _disk(seqs: list[int], size: int = 1 << 20) -> bytearray:
    disk = bytearray(size)
    for slot, seq in enumerate(seqs, start=1):
        disk[slot * RECORD_SIZE : (slot + 1) * RECORD_SIZE] = encode_record(JournalRecord(seq, 0, seq))
    return disk


def _scan(disk: bytearray) -> JournalPosition:
    return scan_journal(lambda off, n: bytes(disk[off : off + n]), len(disk))


def test_scan_finds_the_end_of_an_unbroken_run() -> None:
    assert _scan(_disk([])) == JournalPosition(0, 0)
    assert _scan(_disk(list(range(1, 2001)))) == JournalPosition(2000, 2000)


def test_scan_stops_at_a_torn_record() -> None:
    disk = _disk([1, 2, 3, 4, 5])
    disk[4 * RECORD_SIZE + 10] ^= 0xFF  # seq 4 half written
    assert _scan(disk) == JournalPosition(3, 3)


def test_scan_stops_at_a_stale_record_from_an_older_run() -> None:
    assert _scan(_disk([1, 2, 9, 4])) == JournalPosition(2, 2)


def test_scan_stops_at_the_end_of_a_full_disk() -> None:
    disk = _disk(list(range(1, 15)), size=16 * RECORD_SIZE)
    assert _scan(disk) == JournalPosition(14, 14)
    full = _disk(list(range(1, 16)), size=16 * RECORD_SIZE)
    assert _scan(full) == JournalPosition(15, 15)


def test_memory_starts_zero_and_digest_tracks_versions() -> None:
    a, b = PageVersions(1024), PageVersions(1024)
    assert a.digest() == b.digest()
    a.bump(5)
    assert a.digest() != b.digest()
    b.bump(5)
    assert a.digest() == b.digest()
    assert len(a.to_bytes()) == 4 * 1024


def test_page_bytes_are_derived_not_stored() -> None:
    one = page_bytes("vm-1", 7, 1)
    assert len(one) == PAGE_SIZE
    assert one == page_bytes("vm-1", 7, 1)
    assert one != page_bytes("vm-1", 7, 2)
    assert one != page_bytes("vm-1", 8, 1)
    assert one != page_bytes("vm-2", 7, 1)


def test_guest_ticks_are_deterministic_and_carry_fractions() -> None:
    workload = Workload(dirty_rate_mb_per_s=1.0, journal_writes_per_s=2.0)
    g1 = GuestModel.fresh_boot("vm-1", 4096, workload, JournalPosition())
    g2 = GuestModel.fresh_boot("vm-1", 4096, workload, JournalPosition())
    seqs: list[int] = []
    dirtied = 0
    for _ in range(10):  # one second of 0.1 s ticks
        r1, r2 = g1.tick(0.1), g2.tick(0.1)
        assert r1 == r2
        dirtied += r1.pages_dirtied
        for seq in r1.journal_seqs:
            seqs.append(seq)
            g1.acknowledge(seq)
            g2.acknowledge(seq)
    assert dirtied == 256  # 1 MB/s is 256 pages a second
    assert seqs == [1, 2]  # 2 writes a second, 0.2 per tick carried over
    assert g1.memory.digest() == g2.memory.digest() != PageVersions(4096).digest()
    assert g1.journal == JournalPosition(2, 2)


@pytest.mark.parametrize("rate", [1e9, float("inf"), float("nan")])
def test_a_huge_rate_bumps_at_most_every_page_once_per_tick(rate: float) -> None:
    guest = GuestModel.fresh_boot("vm-1", 4096, Workload(rate, rate), JournalPosition())
    for _ in range(3):
        result = guest.tick(0.1)
        assert result.pages_dirtied == 4096
        assert len(result.journal_seqs) == MAX_JOURNAL_WRITES_PER_TICK
    assert sum(guest.memory.versions) == 3 * 4096


def test_a_guest_without_memory_dirties_nothing() -> None:
    guest = GuestModel.fresh_boot("vm-1", 0, Workload(1e9, 0), JournalPosition())
    assert guest.tick(0.1).pages_dirtied == 0


def test_page_choices_depend_on_the_vm_only() -> None:
    first, again, other = PageChooser("vm-1"), PageChooser("vm-1"), PageChooser("vm-2")
    picks = list(first.choose(100, 1000)) + list(first.choose(7, 1000))
    assert picks == list(again.choose(100, 1000)) + list(again.choose(7, 1000))
    assert picks != list(other.choose(107, 1000))
    assert all(0 <= p < 1000 for p in picks) and len(set(picks)) > 90


def test_journal_continues_after_the_last_acknowledged_write() -> None:
    guest = GuestModel.fresh_boot("vm-1", 16, Workload(0, 10), JournalPosition(41, 41))
    result = guest.tick(0.3)
    assert list(result.journal_seqs) == [42, 43, 44]
    with pytest.raises(ValueError):
        guest.acknowledge(43)


def test_saved_state_round_trip() -> None:
    memory = PageVersions(512)
    for page in (0, 7, 7, 511):
        memory.bump(page)
    data = encode_saved_state("vm-1", memory)
    restored = decode_saved_state("vm-1", data)
    assert restored.digest() == memory.digest()
    assert list(restored.versions) == list(memory.versions)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: d[:10], "truncated"),
        (lambda d: b"XXXX" + d[4:], "not a havm memory image"),
        (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "damaged"),
        (lambda d: d[:-4], "damaged"),
    ],
)
def test_damaged_saved_state_is_refused(mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    data = encode_saved_state("vm-1", PageVersions(64))
    with pytest.raises(StorageFault, match=message):
        decode_saved_state("vm-1", mangle(data))


def test_saved_state_of_another_vm_is_refused() -> None:
    data = encode_saved_state("vm-2", PageVersions(64))
    with pytest.raises(StorageFault, match="belongs to VM vm-2"):
        decode_saved_state("vm-1", data)
