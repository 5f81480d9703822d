"""What every migration flow works with, owned once.

The live, quick and storage flows and the settling after a restart all read and write
the same migration records, ask the same agents where a VM is, and tell the same
event bus. This object holds those collaborators and the small helpers around them,
so that no flow reaches into another's state and every change of a migration's state
goes through one `save`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from havm.contract.topology import MigrationSettings
from manager.app.crash_points import CrashPoints
from manager.app.events import EventBus
from manager.app.host_memory import settle_host_memory
from manager.app.vms import VmService
from manager.core.agent_port import AgentPort
from manager.core.errors import AlreadyExistsError, FailedPreconditionError, ManagerError, NotFoundError
from manager.core.migration import SlotRequest
from manager.core.migration_outcome import available_after, released
from manager.core.migration_phase import MigrationPhase, change_migration_phase
from manager.core.model import HostRecord, MigrationKind, MigrationRecord, ReportedVm, VmRecord
from manager.core.reconcile import record_observed
from manager.core.settings import Settings
from manager.core.states import MigrationState, VmState, change_migration_state
from manager.core.store import Store

log = logging.getLogger(__name__)

HOLDS_MEMORY = frozenset({VmState.RUNNING, VmState.PAUSED})
# States in which a VM surely holds no memory: a quick migration moves it without saving.
AT_REST = frozenset({VmState.SAVED, VmState.STOPPED})
# States a save or a restore passes through on the way to its end.
IN_TRANSIT = frozenset({VmState.SAVING, VmState.STARTING})


class MigrationFailed(ManagerError):
    """A migration ended without moving the VM; the message says why and where it is."""

    code = "ABORTED"


class MigrationContext:
    def __init__(
        self,
        store: Store,
        agents: AgentPort,
        vms: VmService,
        settings: Settings,
        bus: EventBus,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
        crash_points: CrashPoints,
    ) -> None:
        self.store = store
        self.agents = agents
        self.vms = vms
        self.settings = settings
        self.bus = bus
        self.clock = clock
        self.monotonic = monotonic
        self.crash_points = crash_points
        # The topology's `migration:` section; replaced when the topology is loaded.
        self.policy = MigrationSettings()

    # --- records -----------------------------------------------------------------------

    def get(self, migration_id: str) -> MigrationRecord:
        migration = self.store.get_migration(migration_id)
        if migration is None:
            raise NotFoundError(f"migration {migration_id} does not exist")
        return migration

    def host(self, name: str) -> HostRecord:
        host = self.store.get_host(name)
        if host is None:
            raise FailedPreconditionError(f"host {name} no longer exists")
        return host

    def save(
        self,
        migration: MigrationRecord,
        state: MigrationState | None = None,
        phase: MigrationPhase | None = None,
        **changes: object,
    ) -> MigrationRecord:
        """Write the migration with `changes`. A new state or phase is checked against
        the one recorded, which another task may have written meanwhile: every change of
        either goes through its table here."""
        current = self.store.get_migration(migration.id) or migration
        new_state = migration.state if state is None else state
        new_state = change_migration_state(migration.vm_name, current.state, new_state)
        new_phase = migration.phase if phase is None else phase
        new_phase = change_migration_phase(migration.vm_name, current.phase, new_phase)
        updated = replace(
            migration,
            state=new_state,
            phase=new_phase,
            updated_at=self.clock(),
            **changes,  # type: ignore[arg-type]
        )
        self.store.put_migration(updated)
        return updated

    def start(self, migration: MigrationRecord) -> MigrationRecord:
        """The migration leaves the queue: its flow acts from now on."""
        started = self.save(
            migration, state=MigrationState.RUNNING, phase=MigrationPhase.PREPARING, started_at=self.clock()
        )
        self.emit(started, f"migration of VM {started.vm_name} started")
        return started

    def elapsed_ms(self, since: datetime | None) -> int:
        """Milliseconds from `since` to now; 0 when it is not known."""
        if since is None:
            return 0
        return max(0, int((self.clock() - since).total_seconds() * 1000))

    def emit(self, migration: MigrationRecord, detail: str) -> None:
        host = migration.destination if migration.state is MigrationState.COMPLETED else migration.source
        self.bus.emit("migration", detail, host=host, vm=migration.vm_name)

    def observe(self, vm: VmRecord, report: ReportedVm) -> VmRecord:
        updated = record_observed(self.store.get_vm(vm.id) or vm, report.state, report.reason)
        self.vms.record(updated)
        return updated

    def release_vm(self, vm: VmRecord, migration: MigrationRecord) -> None:
        """The migration lets go of the VM (see `released`); the caller holds its lock."""
        let_go = released(vm, migration)
        if let_go != vm:
            self.vms.record(let_go)

    async def settle_memory(self, migration: MigrationRecord) -> None:
        """Both hosts' free memory as their agents see it now that the VM moved or stayed."""
        for host in dict.fromkeys((migration.source, migration.destination)):
            await settle_host_memory(self.store, self.agents, host)

    # --- asking the agents -------------------------------------------------------------

    async def take_over(self, vm: VmRecord, migration: MigrationRecord, target: HostRecord) -> ReportedVm:
        """The destination adopts the VM's files on shared storage with the migration's
        newer lease (fencing the source's copy), as the VM will be there: its host, its
        storage, and the HA flag a transfer across the cluster boundary gives it."""
        moved = replace(
            vm,
            host=target.name,
            storage=migration.storage or vm.storage,
            highly_available=available_after(vm, migration),
        )
        try:
            return await self.agents.create_vm(
                target.name,
                target.address or "",
                moved,
                take_over=True,
                lease_generation=migration.lease_generation,
            )
        except AlreadyExistsError:
            return await self.agents.get_vm(target.name, target.address or "", vm.id)

    async def ask(self, host_name: str, vm_id: str) -> ReportedVm | None:
        """What a host says of the VM now; None when it does not have it or does not answer."""
        report, _answered = await self.look(host_name, vm_id)
        return report

    async def look(self, host_name: str, vm_id: str) -> tuple[ReportedVm | None, bool]:
        """What a host says of the VM now, and whether it answered at all: (None, True)
        is a host that answered that it does not have the VM."""
        host = self.store.get_host(host_name)
        if host is None or not host.address:
            return None, False
        try:
            return await self.agents.get_vm(host_name, host.address, vm_id), True
        except NotFoundError:
            return None, True
        except ManagerError as error:
            log.info("host %s says nothing of VM %s: %s", host_name, vm_id, error.message)
            return None, False

    async def watch_source(
        self, migration: MigrationRecord, busy: Callable[[ReportedVm | None], bool]
    ) -> tuple[ReportedVm | None, bool]:
        """Ask the source until `busy` no longer holds of its answer (bounded); its last
        answer and whether it answered."""
        deadline = self.monotonic() + self.settings.migration_recovery_timeout_s
        report, answered = await self.look(migration.source, migration.vm_id)
        while busy(report) and self.monotonic() < deadline:
            await asyncio.sleep(self.settings.migration_recovery_poll_s)
            report, answered = await self.look(migration.source, migration.vm_id)
        return report, answered


def slot_of(migration: MigrationRecord) -> SlotRequest:
    return SlotRequest(migration.id, migration.source, migration.destination)


def runs_live(migration: MigrationRecord) -> bool:
    """A migration the agents carry out as a live one (to another host, not quick)."""
    return (
        migration.kind in (MigrationKind.LIVE, MigrationKind.STORAGE)
        and not migration.fell_back_to_quick
        and migration.source != migration.destination
    )
