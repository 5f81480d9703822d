"""The source side of a live migration: pre-copy passes, blackout, lease handoff.

The source streams the memory of its running VM to the destination agent: first
every page, then, pass after pass, the pages the guest dirtied meanwhile, until the
rest fits the blackout budget (core.migration decides). Then it pauses the guest,
sends the last pages and the device state, and once the destination reports READY
it moves the storage lease: that compare-and-swap is the commit point. Before it,
any failure resumes the guest here; after it, the VM belongs to the destination and
this host lets its copy go whatever happens. A copy found fenced on the way (a
failover took the VM while it migrated) neither commits nor resumes: the VM is the
new owner's.

The migration runs on its own, whoever listens (app.migration_updates). The outcome
outlives the migration for the last few ids, so a caller that comes back after the
end still learns the figures or the failure; an agent restart forgets them, since the
manager then has the VM's whereabouts to go by.

It works on this host's VMs (HostedVms) and reaches the destination through the peer
link port, never through the host that started it.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from array import array
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace

from node_agent.app.crash_points import SOURCE_LEASE_MOVED, SOURCE_PAUSED, SOURCE_PRE_COPY, CrashPoints
from node_agent.app.guests import HostedVm, catch_up, release_guest, stop_guest
from node_agent.app.hosted_vms import HostedVms
from node_agent.app.migration_updates import MigrationUpdates
from node_agent.core.errors import (
    AgentError,
    Corrupted,
    FailedPrecondition,
    InvalidArgument,
    MigrationFailure,
    Unavailable,
)
from node_agent.core.guest import PAGE_SIZE, GuestModel, PageCodec, page_array
from node_agent.core.journal import journal_region_end
from node_agent.core.lease import Fenced, Lease, check_write, hand_over_lease
from node_agent.core.migration import (
    Commit,
    DeviceState,
    DiskChunk,
    MigrationPhase,
    MigrationProgress,
    MigrationRequest,
    NextStep,
    Offer,
    Outcome,
    PagesChunk,
    PassRecord,
    PeerReply,
    Reply,
    advance,
    decide_after_pass,
)
from node_agent.core.peer_link import MigrationLink, PeerConnector
from node_agent.core.power import PowerState
from node_agent.core.vm import StorageKind, StorageRef
from node_agent.core.vm_devices import check_can_leave

log = logging.getLogger(__name__)
MIB = 1024 * 1024


@dataclass(frozen=True)
class _Plan:
    """What the request means, once checked."""

    request: MigrationRequest
    target: StorageRef
    copy_disk: bool
    max_passes: int
    budget_ms: float


class OutgoingMigration:
    """One live migration of a VM of this host to another agent."""

    def __init__(
        self,
        vms: HostedVms,
        connect: PeerConnector,
        crash_points: CrashPoints,
        vm: HostedVm,
        plan: _Plan,
    ) -> None:
        self._vms = vms
        self._files = vms.files
        self._host_name = vms.config.name
        self._clock = vms.clock
        self._connect = connect
        self._crash_points = crash_points
        self.vm = vm
        self.plan = plan
        self.settings = vms.config.settings
        self.phase = MigrationPhase.PREPARING
        # What every caller following the migration is told, whenever it joins.
        self._updates = MigrationUpdates()
        self._started = self._clock.monotonic()
        self._last_report = 0.0
        self._bytes_sent = 0
        self._pass = 0
        self._rate_mb = 0.0

    @classmethod
    def prepare(
        cls, request: MigrationRequest, vms: HostedVms, connect: PeerConnector, crash_points: CrashPoints
    ) -> OutgoingMigration:
        """Check the request and mark the VM as migrating; nothing is awaited here."""
        config, settings = vms.config, vms.config.settings
        if not request.migration_id:
            raise InvalidArgument("migration_id: is required")
        if not request.destination_address or not request.destination_host:
            raise InvalidArgument("destination_host and destination_address: are required")
        if request.destination_host == config.name:
            raise InvalidArgument(f"destination_host: VM {request.vm_id} is already on host {config.name}")
        if not config.profile.traits.live_migration:
            raise FailedPrecondition(
                f"host {config.name} runs Hyper-V 2008, which moves VMs by quick migration only"
            )
        vm = vms.operable(request.vm_id)
        vms.check_not_migrating(vm)
        if vm.lock.locked():
            # A shutdown in its grace period, a save or a storage move holds the VM:
            # the migration would overtake it and find the guest gone or moved.
            raise FailedPrecondition(
                f"VM {vm.label} is in the middle of another operation on host {config.name}; "
                "migrate it once that has ended"
            )
        if vm.state is not PowerState.RUNNING or vm.guest is None:
            raise FailedPrecondition(
                f"VM {vm.label} is {vm.state.value}; only a running VM can be live-migrated"
            )
        check_can_leave(vm.spec, config.name)
        if request.lease_generation <= vm.lease_generation:
            raise FailedPrecondition(
                f"lease_generation: {request.lease_generation} must be newer than the generation "
                f"{vm.lease_generation} that VM {vm.label} holds on host {config.name}"
            )
        if request.max_passes < 0 or request.blackout_budget_ms < 0 or request.bandwidth_mb_per_s < 0:
            raise InvalidArgument(
                "max_passes, blackout_budget_ms and bandwidth_mb_per_s: must not be negative"
            )
        target = request.storage or vm.spec.storage
        # A local disk of the destination is another disk even under the same name.
        copy_disk = request.storage is not None and (
            target != vm.spec.storage or target.kind is StorageKind.LOCAL_DISK
        )
        if copy_disk and vm.spec.data_disks:
            files = ", ".join(d.file for d in vm.spec.data_disks)
            raise FailedPrecondition(
                f"VM {vm.label} has data disks ({files}), which a live migration does not copy: move it "
                "where its storage is seen, or save it and move it by transfer"
            )
        if not copy_disk and target.kind is StorageKind.LOCAL_DISK:
            raise FailedPrecondition(
                f"VM {vm.label} is on local disk {target.name} of host {config.name}, which host "
                f"{request.destination_host} cannot see: give a storage location there to move the files too"
            )
        plan = _Plan(
            request,
            target,
            copy_disk,
            request.max_passes or settings.migration_max_passes,
            request.blackout_budget_ms or settings.migration_blackout_budget_ms,
        )
        vm.migration_id = request.migration_id
        log.info(
            "VM %s: live migration %s to %s (%s) begins",
            vm.label,
            request.migration_id,
            request.destination_host,
            request.destination_address,
        )
        return cls(vms, connect, crash_points, vm, plan)

    # Progress for the caller

    def progress(self) -> AsyncGenerator[MigrationProgress, None]:
        """Follow the migration from its latest update on (see app.migration_updates)."""
        return self._updates.follow()

    @property
    def listening(self) -> int:
        """How many callers follow the migration now."""
        return self._updates.listening

    @property
    def outcome(self) -> Outcome | None:
        """The final update or the failure, once the migration has ended."""
        return self._updates.outcome

    def _report(self, remaining_bytes: int = 0, force: bool = False) -> None:
        now = self._clock.monotonic()
        if not force and now - self._last_report < self.settings.migration_progress_interval_s:
            return
        self._last_report = now
        self._updates.publish(
            MigrationProgress(
                self.phase,
                pass_number=self._pass,
                bytes_sent=self._bytes_sent,
                bytes_remaining=remaining_bytes,
                mb_per_s=self._rate_mb,
                duration_ms=int((now - self._started) * 1000),
            )
        )

    def _enter(self, phase: MigrationPhase) -> None:
        self.phase = advance(self.vm.label, self.phase, phase)

    # The migration

    async def run(self) -> None:
        try:
            final = await self._migrate()
        except AgentError as exc:
            self._updates.publish(exc)
        except asyncio.CancelledError:
            self._updates.publish(Unavailable(f"host {self._host_name} is stopping"))
            raise
        except Exception as exc:
            log.exception("VM %s: live migration failed unexpectedly", self.vm.label)
            self._updates.publish(AgentError(f"live migration of VM {self.vm.label} failed: {exc}"))
        else:
            self._updates.publish(final)

    async def _migrate(self) -> MigrationProgress:
        vm, plan, request = self.vm, self.plan, self.plan.request
        self._report(force=True)
        peer = self._connect(request.destination_host, request.destination_address)
        paused_at: float | None = None
        handing_over = committed = False
        try:
            reply = await self._offer(peer)
            if plan.copy_disk:
                self._enter(MigrationPhase.DISK_COPY)
                self._report(force=True)
                disk_copied = await self._copy_disk(peer, 0)
            self._enter(MigrationPhase.PRE_COPY)
            last_dirty = await self._pre_copy(peer)
            self._enter(MigrationPhase.BLACKOUT)
            self._report(force=True)
            catch_up(vm)
            paused_at = self._clock.monotonic()
            await stop_guest(vm)
            self._crash_points.reach(SOURCE_PAUSED)
            # The guest's own lease check (at its ticks, or in catch_up) is not seen from
            # here: a copy fenced meanwhile must find out before it hands anything over.
            check_write(vm.label, self._host_name, vm.lease_generation, vm.lease_watch.current())
            guest = self._guest()
            final_pages = last_dirty | guest.take_dirty()
            guest.stop_tracking()
            await self._send_pages(peer, page_array(sorted(final_pages)), cap=False)
            if plan.copy_disk:
                await self._copy_disk(peer, disk_copied)
            digest = guest.memory.digest()
            await peer.send(DeviceState(guest.devices(), digest))
            reply = await self._expect(peer, Reply.READY)
            if reply.memory_digest != digest:
                raise Corrupted(
                    f"host {request.destination_host} received a memory image of VM {vm.label} "
                    "that differs from the one here"
                )
            # The commit point: from this write on the VM is the destination's.
            handing_over = True
            await self._hand_over_lease()
            committed = True
            self._crash_points.reach(SOURCE_LEASE_MOVED)
            await peer.send(Commit())
            reply = await self._expect(peer, Reply.RESUMED)
            blackout_ms = int((self._clock.monotonic() - paused_at) * 1000)
        except BaseException as exc:
            if handing_over and not committed:
                committed = self._lease_handed_over()
            if committed:
                # Unconfirmed: old files stay, in case the destination never took them.
                await self._let_go(remove_old_files=False)
                if isinstance(exc, AgentError):
                    raise Unavailable(
                        f"VM {vm.label} now belongs to host {request.destination_host} (the lease moved, "
                        f"generation {request.lease_generation}), but its resume there was not confirmed: "
                        f"{exc.message}"
                    ) from None
                raise
            if isinstance(exc, Fenced):
                await self._fenced_here(exc)
                raise _reworded(
                    exc,
                    f"{exc.message}; live migration {request.migration_id} to host "
                    f"{request.destination_host} abandoned, and the VM is not resumed on host "
                    f"{self._host_name}",
                ).because(MigrationFailure.FENCED) from None
            self._roll_back(paused_at is not None)
            if isinstance(exc, AgentError):
                message = exc.message
                if exc.code == Unavailable.code and request.destination_host not in message:
                    message = f"host {request.destination_host}: {message}"
                raise _reworded(
                    exc, f"{message}; VM {vm.label} keeps running on host {self._host_name}"
                ) from None
            raise
        finally:
            await peer.close()
        await self._let_go()
        self._enter(MigrationPhase.COMPLETED)
        duration_ms = int((self._clock.monotonic() - self._started) * 1000)
        log.info(
            "VM %s: live migration %s to %s completed: %d passes, %.1f MB, %d ms, blackout %d ms",
            vm.label,
            request.migration_id,
            request.destination_host,
            self._pass,
            self._bytes_sent / MIB,
            duration_ms,
            blackout_ms,
        )
        return MigrationProgress(
            MigrationPhase.COMPLETED,
            pass_number=self._pass,
            bytes_sent=self._bytes_sent,
            mb_per_s=self._rate_mb,
            duration_ms=duration_ms,
            blackout_ms=blackout_ms,
            memory_digest=digest,
            resumed_digest=reply.memory_digest,
            vm=reply.vm,
        )

    async def _offer(self, peer: MigrationLink) -> PeerReply:
        vm, plan = self.vm, self.plan
        offer = Offer(
            migration_id=plan.request.migration_id,
            source_host=self._host_name,
            spec=replace(vm.spec, storage=plan.target),
            lease_generation=plan.request.lease_generation,
            cpu=vm.cpu,
            copy_disk=plan.copy_disk,
            memory_pages=vm.spec.memory_pages,
            source_storage=vm.spec.storage if plan.copy_disk else None,
        )
        await peer.send(offer)
        return await self._expect(peer, Reply.ACCEPTED)

    async def _expect(self, peer: MigrationLink, wanted: Reply) -> PeerReply:
        reply = await peer.receive()
        if reply.reply is not wanted:
            raise Unavailable(
                f"host {peer.host_name} answered {reply.reply.value} where {wanted.value} was expected"
            )
        return reply

    def _guest(self) -> GuestModel:
        """The running guest, or why the migration cannot go on."""
        vm = self.vm
        if self._vms.hosted(vm.spec.id) is not vm or vm.guest is None:
            raise FailedPrecondition(f"VM {vm.label} stopped during its live migration")
        return vm.guest

    async def _pre_copy(self, peer: MigrationLink) -> set[int]:
        """Run the passes; return the pages dirtied during the last one (still to send)."""
        guest = self._guest()
        guest.track_dirty()
        to_send = page_array(range(self.vm.spec.memory_pages))
        passes: list[PassRecord] = []
        while True:
            self._pass = len(passes) + 1
            began, sent_before = self._clock.monotonic(), self._bytes_sent
            await self._send_pages(peer, to_send, cap=True)
            if self._pass == 1:
                self._crash_points.reach(SOURCE_PRE_COPY)
            catch_up(self.vm)
            dirty = self._guest().take_dirty()
            seconds = self._clock.monotonic() - began
            record = PassRecord(self._pass, self._bytes_sent - sent_before, seconds, len(dirty))
            passes.append(record)
            if seconds > 0:
                self._rate_mb = record.bytes_sent / seconds / MIB
            decision = decide_after_pass(
                passes, self.plan.max_passes, self.plan.budget_ms, self.settings.migration_stalled_passes
            )
            log.info(
                "VM %s: pass %d sent %d pages: %s", self.vm.label, self._pass, len(to_send), decision.reason
            )
            self._report(len(dirty) * PAGE_SIZE, force=True)
            if decision.step is NextStep.BLACKOUT:
                return dirty
            if decision.step is NextStep.GIVE_UP:
                raise FailedPrecondition(f"{decision.reason} (live migration of VM {self.vm.label})").because(
                    MigrationFailure.NOT_CONVERGED
                )
            to_send = page_array(sorted(dirty))

    async def _send_pages(self, peer: MigrationLink, pages: array, cap: bool) -> None:
        codec = self._codec()
        size = self.settings.migration_chunk_pages
        limit = self.plan.request.bandwidth_mb_per_s * MIB if cap else 0.0
        began, sent = self._clock.monotonic(), 0
        for start in range(0, len(pages), size):
            chunk = pages[start : start + size]
            versions = self._guest().memory.versions
            if len(chunk) and chunk[-1] - chunk[0] == len(chunk) - 1:
                chunk_versions = versions[chunk[0] : chunk[-1] + 1]  # a run: one slice
            else:
                chunk_versions = array(versions.typecode, map(versions.__getitem__, chunk))
            data = bytes(codec.encode(chunk, chunk_versions))
            await peer.send(PagesChunk(chunk, data, zlib.crc32(data)))
            sent += len(data)
            self._bytes_sent += len(data)
            self._report((len(pages) - start - len(chunk)) * PAGE_SIZE)
            if limit:
                ahead = sent / limit - (self._clock.monotonic() - began)
                if ahead > 0:
                    await asyncio.sleep(ahead)

    def _codec(self) -> PageCodec:
        if not hasattr(self, "_page_codec"):
            self._page_codec = PageCodec(self.vm.spec.id)
        return self._page_codec

    async def _copy_disk(self, peer: MigrationLink, start: int) -> int:
        """Send the journal region from `start` up to the guest's last write; return its end."""
        guest = self.vm.guest
        assert guest is not None
        end = journal_region_end(guest.journal)
        step = self.settings.migration_disk_chunk_bytes
        disk = self._vms.disks.open_blocks(self.vm.disk)
        try:
            for offset in range(start, end, step):
                data = await asyncio.to_thread(disk.read, offset, min(step, end - offset))
                await peer.send(DiskChunk(offset, data, zlib.crc32(data)))
                self._bytes_sent += len(data)
                self._report()
        finally:
            disk.close()
        return end

    async def _hand_over_lease(self) -> None:
        """Swap the lease to the destination, if it is still exactly this copy's.

        The swap runs in a thread that a cancellation cannot stop; it is waited for
        even then, so that the lease on storage tells afterwards whether it wrote.
        """
        vm, request = self.vm, self.plan.request
        new = Lease(request.lease_generation, request.destination_host)
        host_name, held = self._host_name, vm.lease_generation

        def decide(on_storage: Lease | None) -> Lease:
            return hand_over_lease(vm.label, host_name, held, new, on_storage)

        swap = asyncio.ensure_future(asyncio.to_thread(self._files.swap_lease, vm.vm_dir, decide))
        try:
            await asyncio.shield(swap)
        except asyncio.CancelledError:
            await asyncio.wait([swap])
            raise

    def _lease_handed_over(self) -> bool:
        """After a failed or interrupted commit: whether the lease names the destination anyway."""
        request = self.plan.request
        try:
            on_storage = self._files.read_lease(self.vm.vm_dir)
        except AgentError:
            return True  # unknown: not resuming here is what cannot make two copies run
        return on_storage == Lease(request.lease_generation, request.destination_host)

    async def _fenced_here(self, exc: Fenced) -> None:
        """The lease went to another host during the migration: this copy stops for good."""
        vm = self.vm
        vm.migration_id = ""
        await stop_guest(vm)
        if vm.guest is not None:
            vm.guest.stop_tracking()
        if self._vms.hosted(vm.spec.id) is vm:
            self._vms.fence(vm, exc)
        else:
            release_guest(vm)
        log.warning(
            "VM %s: live migration %s abandoned: this copy is fenced and stays stopped",
            vm.label,
            self.plan.request.migration_id,
        )

    def _roll_back(self, paused: bool) -> None:
        """Before the commit point: the VM goes on running here as if nothing happened."""
        vm = self.vm
        vm.migration_id = ""
        if self._vms.hosted(vm.spec.id) is not vm or vm.guest is None:
            return
        vm.guest.stop_tracking()
        if paused or vm.task is None:
            self._vms.start_guest(vm)
        log.warning(
            "VM %s: live migration %s abandoned; it keeps running here",
            vm.label,
            self.plan.request.migration_id,
        )

    async def _let_go(self, remove_old_files: bool = True) -> None:
        """After the commit point: drop this host's copy; its files stay unless they moved."""
        vm, vms = self.vm, self._vms
        await stop_guest(vm)
        release_guest(vm)
        vm.migration_id = ""
        if vms.hosted(vm.spec.id) is vm:
            vms.forget(vm)
        if self.plan.copy_disk and remove_old_files:
            await asyncio.to_thread(self._files.remove_vm_dir, vm.vm_dir)


def _reworded(exc: AgentError, message: str) -> AgentError:
    """The same failure, with the same status code, told in a longer sentence.

    A new error of the same class would lose a code set on the instance (a peer's
    status) and cannot be built for classes whose constructor takes other arguments.
    """
    error = AgentError(message)
    error.code = exc.code
    error.migration_failure = exc.migration_failure
    return error
