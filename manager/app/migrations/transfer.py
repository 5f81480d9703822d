"""Transfers across the cluster boundary: a stopped or saved VM moves by SAN or network.

A SAN transfer is a take-over on the LUN the VM's files are on: the destination
adopts the files with a newer lease (which fences whatever the source still holds),
the VM's HA flag is what the plan says, and the source lets its copy go; no byte is
copied. A network transfer asks the source agent to send the files to the
destination agent (SendVm) and follows its progress; the destination holds the VM
only once every byte arrived and checked, so a failure on the way leaves it whole on
the source. Either way, where the VM is when a step fails is settled from what both
hosts report, as for every migration (`endings`).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from manager.app.jobs import JobHandle
from manager.app.migrations.context import MigrationContext
from manager.app.migrations.endings import conclude
from manager.core.cluster_groups import group_name
from manager.core.copy_progress import MB, copy_percent, copying
from manager.core.errors import ManagerError, NotFoundError
from manager.core.migration import Outcome, holds_new_lease, settle, still_moving, taken_by_failover
from manager.core.migration_outcome import moved_to_destination
from manager.core.migration_phase import MigrationPhase
from manager.core.model import (
    MigrationKind,
    MigrationRecord,
    ReportedVm,
    TransferOrder,
    TransferProgress,
    VmRecord,
)
from manager.core.states import MigrationState

log = logging.getLogger(__name__)


def transfer_label(kind: MigrationKind) -> str:
    return "SAN transfer" if kind is MigrationKind.SAN_TRANSFER else "network transfer"


class Transfers:
    def __init__(self, ctx: MigrationContext) -> None:
        self._ctx = ctx

    async def run(self, job: JobHandle, migration: MigrationRecord) -> str:
        ctx = self._ctx
        async with ctx.vms.lock(migration.vm_id):
            vm = ctx.store.get_vm(migration.vm_id)
        if vm is None:
            raise NotFoundError(f"VM {migration.vm_name} was deleted")
        if taken_by_failover(vm, migration):
            return await conclude(ctx, migration, Outcome.UNKNOWN, None, None, "a failover took the VM first")
        if migration.kind is MigrationKind.SAN_TRANSFER:
            return await self._san(job, migration)
        return await self._network(job, migration, vm)

    # --- SAN ---------------------------------------------------------------------------

    async def _san(self, job: JobHandle, migration: MigrationRecord) -> str:
        ctx = self._ctx
        target = ctx.host(migration.destination)
        lun = migration.storage.name if migration.storage is not None else "?"
        migration = ctx.save(migration, phase=MigrationPhase.TAKING_OVER)
        job.progress(30, f"Moving the ownership of LUN {lun} to {target.name}")
        try:
            async with ctx.vms.lock(migration.vm_id):
                current = ctx.store.get_vm(migration.vm_id)
                if current is None:
                    raise NotFoundError(f"VM {migration.vm_name} was deleted")
                taken = await ctx.take_over(current, migration, target)
        except ManagerError as error:
            found = await ctx.ask(target.name, migration.vm_id)
            if not holds_new_lease(found, migration.lease_generation):
                source_report = await ctx.ask(migration.source, migration.vm_id)
                outcome = Outcome.STAYED if source_report is not None else Outcome.UNKNOWN
                return await conclude(ctx, migration, outcome, source_report, None, error.message)
            assert found is not None
            taken = found
        return await self.arrived(job, migration, taken)

    # --- network -----------------------------------------------------------------------

    async def _network(self, job: JobHandle, migration: MigrationRecord, vm: VmRecord) -> str:
        ctx = self._ctx
        source = ctx.host(migration.source)
        target = ctx.host(migration.destination)
        assert migration.storage is not None
        migration = ctx.save(migration, phase=MigrationPhase.FILE_COPY)
        job.progress(5, f"Copying the files of VM {vm.name} to {target.name}")
        order = TransferOrder(
            transfer_id=migration.id,
            destination_host=target.name,
            destination_address=target.migration_address or target.address or "",
            vm=replace(
                vm,
                host=target.name,
                storage=migration.storage,
                highly_available=bool(migration.highly_available_after),
            ),
            lease_generation=migration.lease_generation,
            bandwidth_mb_per_s=ctx.policy.bandwidth_mb_per_s,
        )
        last: TransferProgress | None = None
        try:
            stream = ctx.agents.send_vm(source.name, source.address or "", order)
            try:
                async for progress in stream:
                    if progress.vm is not None:
                        last = progress
                        continue
                    migration = ctx.save(
                        migration,
                        bytes_sent=progress.bytes_sent,
                        bytes_total=progress.bytes_total,
                        mb_per_s=progress.mb_per_s,
                    )
                    job.progress(
                        # 5 to 89 %: the take-over and the let-go are the rest of the job.
                        copy_percent(progress.bytes_sent, progress.bytes_total, 5, 89),
                        copying(progress.bytes_sent, progress.bytes_total, progress.mb_per_s),
                    )
            finally:
                await stream.aclose()
        except ManagerError as error:
            return await self._settle(job, migration, error.message)
        if last is None or last.vm is None:
            return await self._settle(
                job, migration, f"host {source.name} ended the transfer without an answer"
            )
        migration = ctx.save(
            migration,
            bytes_sent=last.bytes_sent,
            bytes_total=last.bytes_total,
            mb_per_s=last.mb_per_s,
        )
        return await self.arrived(job, migration, last.vm)

    async def _settle(self, job: JobHandle, migration: MigrationRecord, error: str) -> str:
        """The stream ended without the destination's answer: the hosts say where the VM is."""
        ctx = self._ctx
        source_report, source_answered = await ctx.watch_source(
            migration, lambda report: still_moving(report, migration.id)
        )
        target_report = await ctx.ask(migration.destination, migration.vm_id)
        if holds_new_lease(target_report, migration.lease_generation):
            assert target_report is not None
            return await self.arrived(job, migration, target_report)
        outcome = settle(source_report, target_report, migration.lease_generation)
        if outcome is Outcome.STAYED:
            error += f"; VM {migration.vm_name} is whole on {migration.source}"
        return await conclude(ctx, migration, outcome, source_report, target_report, error)

    # --- the end -----------------------------------------------------------------------

    async def arrived(self, job: JobHandle, migration: MigrationRecord, taken: ReportedVm) -> str:
        """The destination holds the VM with the newer lease: record it there, let the
        source's copy go, and complete the transfer."""
        ctx = self._ctx
        target = ctx.host(migration.destination)
        async with ctx.vms.lock(migration.vm_id):
            vm = ctx.store.get_vm(migration.vm_id)
            if vm is not None and not taken_by_failover(vm, migration):
                ctx.vms.record(moved_to_destination(vm, migration, target, taken))
        if migration.kind is MigrationKind.SAN_TRANSFER:
            migration = ctx.save(migration, phase=MigrationPhase.TAKEN_OVER)
        job.progress(90, f"Host {migration.source} lets its copy of VM {migration.vm_name} go")
        await self._let_go(migration)
        done = ctx.save(
            migration,
            state=MigrationState.COMPLETED,
            phase=MigrationPhase.COMPLETED,
            duration_ms=ctx.elapsed_ms(migration.started_at or migration.created_at),
            error="",
        )
        summary = self._summary(done)
        ctx.emit(done, summary)
        return summary

    async def _let_go(self, migration: MigrationRecord) -> None:
        """The source's copy is fenced (SAN) or stale (network): it must not stay registered."""
        ctx = self._ctx
        source = ctx.store.get_host(migration.source)
        if source is None or not source.address:
            return
        try:
            await ctx.agents.delete_vm(source.name, source.address, migration.vm_id)
        except NotFoundError:
            pass  # the source let its copy go already
        except ManagerError as error:
            log.info("host %s kept its copy of VM %s: %s", source.name, migration.vm_name, error.message)

    def _summary(self, done: MigrationRecord) -> str:
        how = transfer_label(done.kind)
        if done.kind is MigrationKind.SAN_TRANSFER:
            lun = done.storage.name if done.storage is not None else "?"
            figures = f"LUN {lun}'s ownership moved, no file bytes copied, {done.duration_ms / 1000:.2f} s"
        elif done.bytes_sent:
            figures = (
                f"{done.bytes_sent / MB:,.1f} MB copied at {done.mb_per_s:,.0f} MB/s, "
                f"{done.duration_ms / 1000:.2f} s"
            )
        else:  # settled from the hosts' reports: no progress reached this manager
            figures = f"its files arrived whole, {done.duration_ms / 1000:.2f} s"
        store = self._ctx.store
        source, target = store.get_host(done.source), store.get_host(done.destination)
        if done.highly_available_after and target is not None and target.cluster is not None:
            ha = f"; highly available in cluster {target.cluster} (group '{group_name(done.vm_name)}')"
        elif done.highly_available_after is False:
            ha = "; not highly available"
        else:
            ha = ""
        if target is not None and target.capabilities.library_server:
            return (
                f"VM {done.vm_name} stored in library server {done.destination} from {done.source} "
                f"by {how} ({figures})"
            )
        if source is not None and source.capabilities.library_server:
            return (
                f"VM {done.vm_name} deployed from library server {done.source} onto {done.destination} "
                f"by {how} ({figures}){ha}"
            )
        return f"VM {done.vm_name} moved {done.source} to {done.destination} by {how} ({figures}){ha}"

    # --- after a manager restart ---------------------------------------------------------

    async def recover(self, job: JobHandle, migration: MigrationRecord) -> str:
        """Settle a transfer a previous manager left open, from what the hosts report."""
        return await self._settle(job, migration, "the manager restarted during the transfer")
