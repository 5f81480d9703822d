"""The migration service: the one entry the rest of the manager calls.

It composes the flows (`requests`, `live`, `quick`, `storage`, `recovery`) around one
shared `MigrationContext` and one owner of the live-migration slots, and runs an
accepted migration as its job: the flow that fits its kind, and whatever happens, the
migration ends and lets go of its VM.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from havm.contract.topology import MigrationSettings
from manager.app.claims import Claim
from manager.app.crash_points import CrashPoints
from manager.app.events import EventBus
from manager.app.jobs import JobBook, JobHandle
from manager.app.migrations.context import MigrationContext
from manager.app.migrations.endings import abandon
from manager.app.migrations.live import LiveMigration
from manager.app.migrations.quick import QuickMigration
from manager.app.migrations.recovery import Recovery
from manager.app.migrations.requests import MigrationRequests
from manager.app.migrations.slots import LiveMigrationSlots
from manager.app.migrations.storage import FileMove
from manager.app.migrations.transfer import Transfers
from manager.app.vms import VmService
from manager.core.agent_port import AgentPort
from manager.core.errors import InvalidArgumentError
from manager.core.model import JobRecord, MigrationKind, MigrationRecord, StorageLocation
from manager.core.settings import Settings
from manager.core.states import JobState
from manager.core.store import Store
from manager.core.transfer import Transfer


class MigrationService:
    """Moving VMs between hosts: live, quick and storage migration, orchestrated, never
    relayed.

    A migration holds the VM's lock only for the short moments it reads or writes the
    VM's record, never while bytes flow: the failover of a host that fails mid-migration
    must be able to take the VM at once.
    """

    def __init__(
        self,
        store: Store,
        agents: AgentPort,
        jobs: JobBook,
        vms: VmService,
        settings: Settings,
        bus: EventBus,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
        crash_at: CrashPoints | None = None,
    ) -> None:
        self.context = MigrationContext(
            store, agents, vms, settings, bus, clock, monotonic, crash_at or CrashPoints(None)
        )
        self.slots = LiveMigrationSlots(lambda: self.context.policy.max_live_migrations_per_host)
        self.quick = QuickMigration(self.context)
        self.live = LiveMigration(self.context, self.slots, self.quick)
        self.files = FileMove(self.context)
        self.transfers = Transfers(self.context)
        self.recovery = Recovery(self.context, jobs, self.slots, self.live, self.quick, self.transfers)
        self.requests = MigrationRequests(self.context, jobs, self._work)

    @property
    def policy(self) -> MigrationSettings:
        """The topology's `migration:` section; set when the topology is loaded."""
        return self.context.policy

    @policy.setter
    def policy(self, policy: MigrationSettings) -> None:
        self.context.policy = policy

    # --- reads ---------------------------------------------------------------------

    def get(self, migration_id: str) -> MigrationRecord:
        return self.context.get(migration_id)

    def list(self, limit: int = 0) -> list[MigrationRecord]:
        if limit < 0:
            raise InvalidArgumentError(f"limit: must not be negative, got {limit}")
        return self.context.store.list_migrations(limit or self.context.settings.migrations_list_default)

    # --- requests ------------------------------------------------------------------

    async def migrate(
        self,
        name: str,
        destination: str,
        quick: bool,
        no_converge: str | None,
        transfer: Transfer = Transfer.AUTO,
        make_ha: bool = False,
        storage: StorageLocation | None = None,
    ) -> tuple[JobRecord, MigrationRecord]:
        """Live or quick migration to another node of the VM's cluster; a SAN or network
        transfer across the cluster boundary."""
        return await self.requests.migrate(name, destination, quick, no_converge, transfer, make_ha, storage)

    async def migrate_storage(
        self, name: str, destination: str, storage: StorageLocation | None
    ) -> tuple[JobRecord, MigrationRecord]:
        """Move the VM's files on its host, or to another host together with the VM."""
        return await self.requests.migrate_storage(name, destination, storage)

    async def store(self, name: str, library: str, transfer: Transfer) -> tuple[JobRecord, MigrationRecord]:
        """Store a stopped or saved VM in a library server."""
        return await self.requests.store(name, library, transfer)

    async def deploy(
        self, name: str, destination: str, transfer: Transfer, make_ha: bool, storage: StorageLocation | None
    ) -> tuple[JobRecord, MigrationRecord]:
        """Deploy a VM stored in the library onto a host."""
        return await self.requests.deploy(name, destination, transfer, make_ha, storage)

    # --- after a manager restart -----------------------------------------------------

    def settle_queued(self) -> None:
        self.recovery.settle_queued()

    def jobs_being_settled(self) -> set[str]:
        return self.recovery.jobs_being_settled()

    def concluded_jobs(self) -> dict[str, tuple[JobState, str]]:
        return self.recovery.concluded_jobs()

    async def recover(self) -> None:
        await self.recovery.recover()

    # --- the job ---------------------------------------------------------------------

    async def _work(self, job: JobHandle, migration_id: str) -> str:
        ctx = self.context
        migration = ctx.get(migration_id)
        try:
            if migration.kind is MigrationKind.QUICK:
                summary = await self.quick.run(job, ctx.start(migration))
            elif migration.kind in (MigrationKind.SAN_TRANSFER, MigrationKind.NETWORK_TRANSFER):
                summary = await self.transfers.run(job, ctx.start(migration))
            elif migration.source == migration.destination:
                summary = await self.files.run(job, ctx.start(migration))
            else:
                summary = await self.live.run(job, migration)
        except Exception as error:
            # Whatever escaped, the migration ends and lets go of its VM; a cancelled
            # job (the manager stops) is left to the settling after the restart.
            await abandon(ctx, migration_id, error)
            await ctx.settle_memory(migration)
            raise
        finally:
            ctx.vms.claims.release(migration.vm_id, Claim.MIGRATION)
        await ctx.settle_memory(migration)
        return summary
