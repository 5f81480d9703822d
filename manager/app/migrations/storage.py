"""Storage migration on one host: the VM's files move to other storage, the VM stays.

The host's agent copies the files (while the VM runs, with a short blackout to switch
over) and reports the result in one answer; there is no stream to follow. A storage
migration to another host is a live migration that copies the disk too (see `live`).
"""

from __future__ import annotations

from dataclasses import replace

from manager.app.jobs import JobHandle
from manager.app.migrations.context import MigrationContext
from manager.app.migrations.endings import conclude
from manager.core.errors import ManagerError
from manager.core.migration import Outcome
from manager.core.migration_phase import MigrationPhase
from manager.core.model import MigrationRecord
from manager.core.reconcile import record_observed
from manager.core.states import MigrationState


class FileMove:
    def __init__(self, ctx: MigrationContext) -> None:
        self._ctx = ctx

    async def run(self, job: JobHandle, migration: MigrationRecord) -> str:
        ctx = self._ctx
        host = ctx.host(migration.source)
        assert migration.storage is not None
        job.progress(10, f"Moving the files of VM {migration.vm_name} to {migration.storage.name}")
        try:
            result = await ctx.agents.move_vm_storage(
                host.name, host.address or "", migration.vm_id, migration.storage
            )
        except ManagerError as error:
            report = await ctx.ask(host.name, migration.vm_id)
            return await conclude(
                ctx, migration, Outcome.STAYED if report else Outcome.UNKNOWN, report, None, error.message
            )
        async with ctx.vms.lock(migration.vm_id):
            vm = ctx.store.get_vm(migration.vm_id)
            if vm is not None:
                moved = replace(
                    record_observed(vm, result.vm.state, result.vm.reason),
                    storage=result.vm.storage or migration.storage,
                    migration_id=None,
                )
                ctx.vms.record(moved)
        done = ctx.save(
            migration,
            state=MigrationState.COMPLETED,
            phase=MigrationPhase.COMPLETED,
            bytes_sent=result.bytes_copied,
            duration_ms=result.duration_ms,
            blackout_ms=result.blackout_ms,
        )
        summary = (
            f"files of VM {done.vm_name} moved to {migration.storage.name} on {host.name}: "
            f"{result.bytes_copied / 1e6:.1f} MB in {result.duration_ms} ms, blackout {result.blackout_ms} ms"
        )
        ctx.emit(done, summary)
        return summary
