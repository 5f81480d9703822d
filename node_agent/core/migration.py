"""Live migration: its phases, the messages between source and destination, and when
the pre-copy passes stop.

The source streams the memory to the destination while the guest runs; each pass
re-sends what the guest dirtied during the previous one. `decide_after_pass` says
whether to pause the guest now (the rest fits the blackout budget), to run another
pass, or to give up because the guest dirties memory as fast as it can be sent.
The app does the sending; these are the decisions and the vocabulary.
"""

from __future__ import annotations

import enum
import logging
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from node_agent.core.cpu import GuestCpu
from node_agent.core.errors import AgentError, FailedPrecondition
from node_agent.core.guest import PAGE_SIZE, GuestDevices
from node_agent.core.views import VmView
from node_agent.core.vm import StorageRef, VmSpec

log = logging.getLogger(__name__)

# The manager falls back to quick migration on failures whose message starts so.
NOT_CONVERGING = "did not converge"


class MigrationPhase(enum.Enum):
    """Where a live migration is, seen from its source."""

    PREPARING = "preparing"  # the destination checks the VM and reserves its memory
    DISK_COPY = "disk_copy"  # the journal region of the disk is copied while the guest runs
    PRE_COPY = "pre_copy"  # memory passes while the guest runs on the source
    BLACKOUT = "blackout"  # guest paused: last pages, device state, lease handoff, resume
    COMPLETED = "completed"  # the VM runs on the destination; the source let it go
    FAILED = "failed"  # ended before the destination resumed: the VM runs on the source


PHASE_TRANSITIONS: dict[MigrationPhase, dict[MigrationPhase, str]] = {
    MigrationPhase.PREPARING: {
        MigrationPhase.DISK_COPY: "accepted; the files move too",
        MigrationPhase.PRE_COPY: "accepted; the files stay on shared storage",
        MigrationPhase.FAILED: "the destination refused or could not be reached",
    },
    MigrationPhase.DISK_COPY: {
        MigrationPhase.PRE_COPY: "disk copied up to the guest's current write",
        MigrationPhase.FAILED: "the copy broke off",
    },
    MigrationPhase.PRE_COPY: {
        MigrationPhase.BLACKOUT: "what is left fits the blackout budget",
        MigrationPhase.FAILED: "did not converge, or the copy broke off",
    },
    MigrationPhase.BLACKOUT: {
        MigrationPhase.COMPLETED: "the destination resumed the guest",
        MigrationPhase.FAILED: "failed before the lease moved: the guest resumes on the source",
    },
    MigrationPhase.COMPLETED: {},
    MigrationPhase.FAILED: {},
}


def advance(label: str, old: MigrationPhase, new: MigrationPhase) -> MigrationPhase:
    """Check one phase change against the table and log it; return `new`."""
    if new not in PHASE_TRANSITIONS[old]:
        raise FailedPrecondition(f"migration of VM {label} cannot go from {old.value} to {new.value}")
    log.info("migration of VM %s: %s => %s", label, old.value, new.value)
    return new


@dataclass(frozen=True)
class MigrationRequest:
    vm_id: str
    migration_id: str
    destination_host: str
    destination_address: str
    lease_generation: int
    max_passes: int  # 0: the agent's setting
    blackout_budget_ms: float  # 0: the agent's setting
    bandwidth_mb_per_s: float  # 0: no cap
    storage: StorageRef | None  # None: the files stay where they are
    reattach: bool = False  # only follow the migration of this id; never start one


@dataclass(frozen=True)
class MigrationProgress:
    phase: MigrationPhase
    pass_number: int = 0
    bytes_sent: int = 0
    bytes_remaining: int = 0
    mb_per_s: float = 0.0
    duration_ms: int = 0
    blackout_ms: int = 0
    memory_digest: str = ""
    resumed_digest: str = ""
    vm: VmView | None = None


# Messages of the stream from the source to the destination.


@dataclass(frozen=True)
class Offer:
    migration_id: str
    source_host: str
    spec: VmSpec  # with the storage where the destination keeps the files
    lease_generation: int
    cpu: GuestCpu | None
    copy_disk: bool
    memory_pages: int
    source_storage: StorageRef | None = None  # with copy_disk: where the source keeps the files


@dataclass(frozen=True)
class PagesChunk:
    pages: array[int]
    data: bytes
    crc32: int


@dataclass(frozen=True)
class DiskChunk:
    offset: int
    data: bytes
    crc32: int


@dataclass(frozen=True)
class DeviceState:
    devices: GuestDevices
    memory_digest: str


@dataclass(frozen=True)
class Commit:
    """The source moved the lease to the destination: resume."""


SourceMessage = Offer | PagesChunk | DiskChunk | DeviceState | Commit


class Reply(enum.Enum):
    ACCEPTED = "accepted"  # the skeleton VM holds its memory
    READY = "ready"  # memory, disk and device state checked: the lease may move
    RESUMED = "resumed"  # the VM runs on the destination


@dataclass(frozen=True)
class PeerReply:
    reply: Reply
    vm: VmView | None = None
    memory_digest: str = ""


# When the passes stop.


@dataclass(frozen=True)
class PassRecord:
    """One pre-copy pass as measured by the source."""

    number: int
    bytes_sent: int
    seconds: float
    dirty_pages_after: int  # dirtied while it ran: the next pass's work


class NextStep(enum.Enum):
    ANOTHER_PASS = "another_pass"
    BLACKOUT = "blackout"
    GIVE_UP = "give_up"


@dataclass(frozen=True)
class PassDecision:
    step: NextStep
    reason: str


def decide_after_pass(
    passes: Sequence[PassRecord], max_passes: int, blackout_budget_ms: float, stalled_passes: int
) -> PassDecision:
    """After a pass: pause the guest now, copy again, or give up.

    Purely computational. The guest is paused once the dirty remainder can be sent
    within the blackout budget at the rate the last pass measured. The migration
    gives up at `max_passes`, or earlier once the dirty remainder has not shrunk for
    `stalled_passes` passes in a row: the guest dirties memory at least as fast as
    it can be sent, and more passes would only keep it waiting.
    """
    last = passes[-1]
    rate = last.bytes_sent / last.seconds if last.seconds > 0 else float("inf")
    remaining = last.dirty_pages_after * PAGE_SIZE
    seconds_left = remaining / rate if rate > 0 else float("inf")
    mb = remaining / (1024 * 1024)
    if seconds_left * 1000 <= blackout_budget_ms:
        return PassDecision(
            NextStep.BLACKOUT, f"{mb:.1f} MB left fit the {blackout_budget_ms:g} ms blackout budget"
        )
    rate_mb = rate / (1024 * 1024)
    if len(passes) >= max_passes:
        return PassDecision(
            NextStep.GIVE_UP,
            f"{NOT_CONVERGING}: {mb:.1f} MB still dirty after {len(passes)} passes at {rate_mb:.0f} MB/s, "
            f"more than a {blackout_budget_ms:g} ms blackout allows",
        )
    recent = [p.dirty_pages_after for p in passes[-(stalled_passes + 1) :]]
    if len(recent) == stalled_passes + 1 and all(b >= a for a, b in zip(recent, recent[1:], strict=False)):
        return PassDecision(
            NextStep.GIVE_UP,
            f"{NOT_CONVERGING}: the guest dirties memory at least as fast as it is sent "
            f"({rate_mb:.0f} MB/s); {mb:.1f} MB still dirty after {len(passes)} passes",
        )
    return PassDecision(NextStep.ANOTHER_PASS, f"{mb:.1f} MB dirtied during pass {last.number}")


def chunks(pages: Sequence[int], size: int) -> list[Sequence[int]]:
    """`pages` cut into runs of at most `size`, in order."""
    return [pages[i : i + size] for i in range(0, len(pages), size)]


# How recent outgoing migrations ended, for callers that come back asking.

# Enough for a manager to come back after a restart and ask about every migration it
# had under way; bounded, since nobody tells the agent when an outcome was read.
REMEMBERED_MIGRATIONS = 64

Outcome = MigrationProgress | AgentError


class FinishedMigrations:
    """The outcomes of the last `limit` outgoing migrations, by migration id; oldest dropped first."""

    def __init__(self, limit: int = REMEMBERED_MIGRATIONS) -> None:
        self.limit = limit
        self._outcomes: OrderedDict[str, Outcome] = OrderedDict()

    def remember(self, migration_id: str, outcome: Outcome) -> None:
        self._outcomes[migration_id] = outcome
        self._outcomes.move_to_end(migration_id)
        while len(self._outcomes) > self.limit:
            self._outcomes.popitem(last=False)

    def get(self, migration_id: str) -> Outcome | None:
        return self._outcomes.get(migration_id)

    def __len__(self) -> int:
        return len(self._outcomes)
