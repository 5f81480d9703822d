"""The running side of a VM: its guest task, ticking memory and journal writes.

A guest is an asyncio task that, every tick, asks the core model what the guest did
and writes the resulting journal records to the virtual disk. A write counts as
acknowledged once pwrite returned, which is what survives a kill -9 of the agent.
At every tick and before each write the guest looks at the VM's storage lease (a
stat, and a read only when the file changed): a copy that lost it is fenced, so its
write is refused and the guest ends at once, even a guest that writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from node_agent.core.clock import Clock
from node_agent.core.cpu import GuestCpu
from node_agent.core.errors import AgentError
from node_agent.core.guest import GuestModel
from node_agent.core.host_storage import LeaseSource
from node_agent.core.journal import JournalPosition, JournalRecord, check_room, encode_record
from node_agent.core.lease import Fenced, check_write
from node_agent.core.power import PowerState
from node_agent.core.views import VmView
from node_agent.core.virtual_disks import GuestJournal
from node_agent.core.vm import VmSpec

log = logging.getLogger(__name__)

GuestFailed = Callable[["HostedVm", str], None]
GuestFenced = Callable[["HostedVm", Fenced], None]


@dataclass
class HostedVm:
    """A VM of this host with what runs it."""

    spec: VmSpec
    vm_dir: Path
    state: PowerState
    state_since: float
    lease_watch: LeaseSource
    # The storage lease generation this copy holds; every journal record carries it.
    lease_generation: int
    # The name of its virtual disk in `vm_dir` (VirtualDisks.disk_name).
    disk_name: str
    reason: str = ""
    guest: GuestModel | None = None
    journal: GuestJournal | None = None
    # The pass-through disks' blocks, open while the guest runs: it journals to them too.
    passthrough_journals: list[GuestJournal] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    # Known while the VM has no running guest; None means "scan the disk".
    idle_journal: JournalPosition | None = None
    saved_digest: str | None = None
    # The processor the guest sees: set at power on or restore, kept while saved.
    cpu: GuestCpu | None = None
    # Set while the VM leaves (source) or arrives (skeleton) by live migration.
    migration_id: str = ""
    # How the running guest reaches its host, and the moment (monotonic) it was last
    # advanced to: a guest advances by the time that really passed, not by a fixed tick.
    hooks: GuestHooks | None = None
    advanced_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def disk(self) -> Path:
        return self.vm_dir / self.disk_name

    def view(self) -> VmView:
        return VmView(
            self.spec,
            self.state,
            self.reason,
            self.state_since,
            self.lease_generation,
            self.cpu,
            self.migration_id,
        )


@dataclass(frozen=True)
class GuestHooks:
    """What a guest needs from its host: who it is and whom to tell when it ends."""

    host_name: str
    tick_s: float
    on_failure: GuestFailed
    on_fenced: GuestFenced
    # The host's clock: a scenario's agent runs on virtual time.
    clock: Clock


# A guest that was not scheduled for longer (a frozen agent) does not make up for all of
# that time at once: like a real guest, a frozen one did nothing meanwhile.
MAX_CATCH_UP_TICKS = 2


def start_guest(vm: HostedVm, hooks: GuestHooks) -> None:
    vm.hooks, vm.advanced_at = hooks, hooks.clock.monotonic()
    vm.task = asyncio.create_task(_run(vm, hooks), name=f"guest-{vm.spec.id}")


def catch_up(vm: HostedVm) -> None:
    """Advance a running guest to now, between two of its ticks.

    A live migration's pass can be shorter than a tick: without this, the pages the
    guest dirtied since its last tick would be missed by the pass's dirty set, and a
    guest that dirties memory continuously would look idle. An error is left to the
    guest's own next tick, which handles it as always.
    """
    if vm.task is None or vm.hooks is None or vm.guest is None:
        return
    try:
        _advance(vm, vm.hooks)
    except Exception as exc:
        log.debug("VM %s: catching up left to the next tick: %s", vm.label, exc)


async def stop_guest(vm: HostedVm) -> None:
    """Stop the guest task; the memory image and the open disk stay (see release_guest)."""
    task, vm.task = vm.task, None
    if task is None or task is asyncio.current_task():
        return
    task.cancel()
    # Waiting, not awaiting: a guest that already died must not fail the caller's
    # stop or turn off a second time, and our own cancellation still propagates.
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        log.warning("VM %s: its guest had already stopped: %s", vm.label, task.exception())


def release_guest(vm: HostedVm) -> None:
    """Drop the memory image and close the disk; the journal position stays known."""
    if vm.guest is not None:
        vm.idle_journal = vm.guest.journal
    if vm.journal is not None:
        vm.journal.close()
    for raw in vm.passthrough_journals:
        raw.close()
    vm.guest, vm.journal, vm.passthrough_journals = None, None, []


async def _run(vm: HostedVm, hooks: GuestHooks) -> None:
    """Tick the guest until cancelled; any error fails the VM instead of dying unseen."""
    while True:
        await asyncio.sleep(hooks.tick_s)
        try:
            _advance(vm, hooks)
        except Fenced as exc:
            vm.task = None
            release_guest(vm)
            try:
                hooks.on_fenced(vm, exc)
            except Exception:
                log.exception("VM %s: its fencing cannot be recorded", vm.label)
            return
        except Exception as exc:
            expected = isinstance(exc, AgentError | OSError)
            if isinstance(exc, AgentError):
                reason = exc.message
            elif expected:
                reason = str(exc)
            else:
                reason = f"its guest crashed: {type(exc).__name__}: {exc}"
            # A fault of the disk is the VM's problem; anything else is a bug worth a traceback.
            log.error("VM %s: guest stopped: %s", vm.label, reason, exc_info=not expected)
            vm.task = None
            release_guest(vm)
            try:
                hooks.on_failure(vm, reason)
            except Exception:
                log.exception("VM %s: its failure cannot be recorded", vm.label)
            return


def _advance(vm: HostedVm, hooks: GuestHooks) -> None:
    now = hooks.clock.monotonic()
    elapsed = min(now - vm.advanced_at, MAX_CATCH_UP_TICKS * hooks.tick_s)
    vm.advanced_at = now
    if elapsed > 0:
        _step(vm, hooks, elapsed)


def _step(vm: HostedVm, hooks: GuestHooks, elapsed_s: float) -> None:
    guest, journal = vm.guest, vm.journal
    assert guest is not None and journal is not None
    # Every tick, not only before a write: a guest that writes nothing must not run on
    # beside the copy that took its lease.
    check_write(vm.label, hooks.host_name, vm.lease_generation, vm.lease_watch.current())
    result = guest.tick(elapsed_s)
    for seq in result.journal_seqs:
        check_room(guest.journal, journal.disk_bytes, vm.label)
        # No await between this check and the write: nothing can slip in between.
        check_write(vm.label, hooks.host_name, vm.lease_generation, vm.lease_watch.current())
        record = encode_record(JournalRecord(seq, vm.lease_generation, int(hooks.clock.time() * 1e9)))
        journal.write(seq, record)
        for raw in vm.passthrough_journals:  # the same write lands on every disk the guest has
            raw.write(seq, record)
        guest.acknowledge(seq)
