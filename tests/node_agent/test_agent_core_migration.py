"""Pure decisions of migration: the processor a guest sees, compatibility reasons, when
pre-copy stops, the pages on the wire and dirty-page tracking."""

from __future__ import annotations

import zlib
from dataclasses import replace

import pytest

from node_agent.core.compatibility import compatibility_reasons
from node_agent.core.config import CpuSpec, parse_host_config
from node_agent.core.cpu import GuestCpu, guest_cpu
from node_agent.core.errors import Corrupted, FailedPrecondition
from node_agent.core.guest import (
    PAGE_SIZE,
    GuestModel,
    PageCodec,
    PageVersions,
    decode_saved_state,
    decode_saved_state_with_cpu,
    encode_saved_state,
    page_array,
)
from node_agent.core.journal import JournalPosition
from node_agent.core.migration import (
    NOT_CONVERGING,
    MigrationPhase,
    NextStep,
    PassRecord,
    advance,
    decide_after_pass,
)
from node_agent.core.vm import StorageKind, StorageRef, VmSpec, Workload

NEHALEM = CpuSpec(
    "GenuineIntel", "Xeon X5570", ("sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "vmx", "nx", "lm"), 8, 2933
)


def _host(**overrides: object) -> object:
    raw = {
        "name": "node2",
        "profile": "hyperv-2008r2",
        "cpu": {
            "vendor": "GenuineIntel",
            "model": "Xeon 5160",
            "features": ["sse3", "nx", "lm"],
            "cores": 4,
            "mhz": 3000,
        },
        "memory_mb": 4096,
        "networks": [{"name": "External"}],
        "volumes": [{"name": "Volume1", "kind": "csv", "capacity_gb": 100}],
        "san_root": "/san",
    }
    return parse_host_config(raw | overrides)


SPEC = VmSpec("vm-1", "web1", 1024, 1, 10, StorageRef(StorageKind.CSV, "Volume1"), ("External",))


def test_the_guest_never_sees_virtualization_extensions() -> None:
    assert guest_cpu(NEHALEM, False) == GuestCpu(
        "GenuineIntel", ("sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "nx", "lm")
    )


def test_compatibility_mode_hides_the_newer_features() -> None:
    assert guest_cpu(NEHALEM, True) == GuestCpu("GenuineIntel", ("sse3", "nx", "lm"))


def test_a_compatible_destination_has_no_reasons() -> None:
    assert compatibility_reasons(SPEC, GuestCpu("GenuineIntel", ("sse3", "nx")), _host(), 2048) == []  # type: ignore[arg-type]
    # A VM that is not running boots with whatever the host offers.
    assert compatibility_reasons(SPEC, None, _host(), 2048) == []  # type: ignore[arg-type]


def test_every_reason_is_listed() -> None:
    spec = replace(SPEC, networks=("External", "Backup", "DMZ"), storage=StorageRef(StorageKind.LUN, "lun9"))
    reasons = compatibility_reasons(spec, guest_cpu(NEHALEM, False), _host(), 512)  # type: ignore[arg-type]
    assert len(reasons) == 5
    assert "lacks ssse3, sse4_1, sse4_2, popcnt" in reasons[0] and "compatibility mode" in reasons[0]
    assert reasons[1] == "not enough memory on host node2: VM web1 needs 1024 MB, 512 MB available"
    assert "no virtual network named 'Backup'" in reasons[2] and "'DMZ'" in reasons[3]
    assert reasons[4] == "host node2 cannot see LUN lun9"


def test_another_vendor_is_one_reason_and_port_groups_are_named_so() -> None:
    amd = GuestCpu("AuthenticAMD", ("sse3",))
    reasons = compatibility_reasons(replace(SPEC, networks=("VM Network",)), amd, _host(profile="esx"), 4096)  # type: ignore[arg-type]
    assert "AuthenticAMD" in reasons[0] and "GenuineIntel" in reasons[0]
    assert "no port group named 'VM Network'" in reasons[1]


def test_no_hint_once_compatibility_mode_is_on() -> None:
    spec = replace(SPEC, processor_compatibility=True)
    reasons = compatibility_reasons(spec, GuestCpu("GenuineIntel", ("sse2",)), _host(), 4096)  # type: ignore[arg-type]
    assert reasons == ["the processor of host node2 lacks sse2, which VM web1 uses"]


def _pass(number: int, dirty: int, mb: int = 100, seconds: float = 0.25) -> PassRecord:
    return PassRecord(number, mb * 1024 * 1024, seconds, dirty)


def test_pre_copy_stops_once_the_rest_fits_the_blackout_budget() -> None:
    # 400 MB/s: 30 ms carry 12 MB = 3072 pages.
    assert decide_after_pass([_pass(1, 3000)], 10, 30, 3).step is NextStep.BLACKOUT
    assert decide_after_pass([_pass(1, 4000)], 10, 30, 3).step is NextStep.ANOTHER_PASS
    assert decide_after_pass([_pass(1, 0)], 10, 30, 3).step is NextStep.BLACKOUT


def test_pre_copy_gives_up_at_max_passes() -> None:
    passes = [_pass(n, 50_000 - n * 1000) for n in range(1, 11)]
    decision = decide_after_pass(passes, 10, 30, 3)
    assert decision.step is NextStep.GIVE_UP and decision.reason.startswith(NOT_CONVERGING)
    assert "after 10 passes" in decision.reason
    assert decide_after_pass(passes[:9], 10, 30, 3).step is NextStep.ANOTHER_PASS


def test_pre_copy_gives_up_early_when_the_dirty_rest_stops_shrinking() -> None:
    passes = [_pass(1, 9000), _pass(2, 9000), _pass(3, 9100)]
    assert decide_after_pass(passes, 10, 30, 3).step is NextStep.ANOTHER_PASS
    passes.append(_pass(4, 9100))
    decision = decide_after_pass(passes, 10, 30, 3)
    assert decision.step is NextStep.GIVE_UP and "as fast as it is sent" in decision.reason
    shrinking = [_pass(1, 9000), _pass(2, 9000), _pass(3, 8000), _pass(4, 8000)]
    assert decide_after_pass(shrinking, 10, 30, 3).step is NextStep.ANOTHER_PASS


def test_phases_follow_the_table() -> None:
    assert advance("web1", MigrationPhase.PRE_COPY, MigrationPhase.BLACKOUT) is MigrationPhase.BLACKOUT
    with pytest.raises(FailedPrecondition, match="from completed to pre_copy"):
        advance("web1", MigrationPhase.COMPLETED, MigrationPhase.PRE_COPY)


def test_pages_round_trip_and_each_check_fails_alone() -> None:
    codec = PageCodec("vm-1")
    pages, versions = page_array([3, 9, 10]), page_array([1, 0, 7])
    data = bytes(codec.encode(pages, versions))
    assert len(data) == 3 * PAGE_SIZE and data[:8] == (3).to_bytes(4, "little") + (1).to_bytes(4, "little")
    assert codec.decode(pages, data, zlib.crc32(data)) == versions

    with pytest.raises(Corrupted, match="CRC-32"):
        codec.decode(pages, data, zlib.crc32(data) ^ 1)
    with pytest.raises(Corrupted, match="page headers"):
        codec.decode(page_array([3, 9, 11]), data, zlib.crc32(data))
    body_flipped = bytearray(data)
    body_flipped[PAGE_SIZE + 100] ^= 1
    with pytest.raises(Corrupted, match="body"):
        codec.decode(pages, bytes(body_flipped), zlib.crc32(body_flipped))
    other = bytes(PageCodec("vm-2").encode(pages, versions))
    with pytest.raises(Corrupted, match="body"):
        codec.decode(pages, other, zlib.crc32(other))


def test_dirty_tracking_collects_what_ticks_dirty_per_pass() -> None:
    guest = GuestModel.fresh_boot("vm-1", 4096, Workload(2.0, 0), JournalPosition())
    guest.tick(0.1)
    guest.track_dirty()
    before = PageVersions.from_bytes(guest.memory.to_bytes())
    guest.tick(0.1)
    dirty = guest.take_dirty()
    changed = {p for p in range(4096) if guest.memory.versions[p] != before.versions[p]}
    assert dirty == changed and 0 < len(dirty) <= 51
    assert guest.take_dirty() == set()
    guest.stop_tracking()
    guest.tick(0.1)
    with pytest.raises(ValueError):
        guest.take_dirty()


def test_a_resumed_guest_continues_the_same_sequence() -> None:
    workload = Workload(3.0, 7.0)
    original = GuestModel.fresh_boot("vm-1", 4096, workload, JournalPosition())
    for _ in range(3):
        for seq in original.tick(0.1).journal_seqs:
            original.acknowledge(seq)
    copy = GuestModel.resumed(
        "vm-1", PageVersions.from_bytes(original.memory.to_bytes()), workload, original.devices()
    )
    a, b = original.tick(0.1), copy.tick(0.1)
    assert a == b and original.memory.digest() == copy.memory.digest()
    assert a.journal_seqs.start == original.journal.next_seq


def test_saved_state_keeps_the_guest_processor() -> None:
    memory = PageVersions(64)
    cpu = GuestCpu("GenuineIntel", ("sse3", "nx"))
    data = encode_saved_state("vm-1", memory, cpu)
    saved = decode_saved_state_with_cpu("vm-1", data)
    assert saved.cpu == cpu and saved.memory.digest() == memory.digest()
    assert decode_saved_state_with_cpu("vm-1", encode_saved_state("vm-1", memory)).cpu is None
    assert decode_saved_state("vm-1", data).digest() == memory.digest()


def test_a_vm_json_written_before_the_setting_reads_as_off() -> None:
    from node_agent.adapters.files import spec_from_json, spec_to_json

    raw = spec_to_json(replace(SPEC, processor_compatibility=True))
    assert spec_from_json(raw).processor_compatibility is True
    del raw["processor_compatibility"]
    assert spec_from_json(raw).processor_compatibility is False
