"""The destination side of a live migration: a skeleton VM that fills up, then resumes.

The source agent opens the stream. The offer is checked like any VM that moves here
(processor, memory, networks, storage, pass-through disks, its cluster group's
resources); if it fits, a skeleton VM reserves its
memory. Pages (and disk extents when the files move too) are checked and taken in;
the device state must match the image received (same digest) before READY. The VM
resumes here only once the storage lease names this host with the offered
generation: after the source's commit, or on its own when the source vanished right
after moving the lease. Anything else discards the skeleton, and the VM keeps
running on the source. Every discard looks at the lease first: a VM whose lease names
this host (or, when the files moved too, whose commit arrived) is this host's and is
never dropped; if it cannot resume, it stays on record, failed, to be started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import AsyncIterator

from node_agent.app.crash_points import DESTINATION_COMMITTING, DESTINATION_COPYING, CrashPoints
from node_agent.app.guests import HostedVm, release_guest
from node_agent.app.hosted_vms import HostedVms
from node_agent.core.config import HostConfig
from node_agent.core.errors import (
    AgentError,
    Corrupted,
    FailedPrecondition,
    InvalidArgument,
    Unavailable,
)
from node_agent.core.guest import GuestDevices, GuestModel, PageCodec, PageVersions
from node_agent.core.lease import Lease
from node_agent.core.migration import (
    Commit,
    DeviceState,
    DiskChunk,
    Offer,
    PagesChunk,
    PeerReply,
    Reply,
    SourceMessage,
)
from node_agent.core.power import PowerState, transition
from node_agent.core.virtual_disks import DiskBlocks
from node_agent.core.vm import (
    GIB,
    StorageKind,
    StorageRef,
    check_lun_free,
    check_storage_room,
    check_storage_visible,
    validate_spec,
)

log = logging.getLogger(__name__)

# Messages read ahead of the one being handled: beyond it the stream's flow control
# holds the source back.
_INBOX_DEPTH = 4
# Put in the inbox when the source closed the stream.
_END = None


class IncomingMigration:
    """One migration stream arriving at this host."""

    def __init__(self, vms: HostedVms, crash_points: CrashPoints) -> None:
        self._vms = vms
        self._files = vms.files
        self._disks = vms.disks
        self._crash_points = crash_points
        self.settings = vms.config.settings
        self.error: AgentError | None = None
        self._inbox: asyncio.Queue[SourceMessage | None] = asyncio.Queue(maxsize=_INBOX_DEPTH)
        self._outbox: asyncio.Queue[PeerReply | None] = asyncio.Queue()
        self._closed = False
        self._close_problem: AgentError | None = None
        self._offer: Offer | None = None
        self._skeleton: HostedVm | None = None
        self._memory: PageVersions | None = None
        self._codec: PageCodec | None = None
        self._disk: DiskBlocks | None = None
        self._created_dir = False
        self._devices: GuestDevices | None = None
        # The VM once it is this host's (the lease came here).
        self._adopted: HostedVm | None = None
        self._pages_arrived = False
        # When the files move too, the commit message is what makes the VM this host's:
        # the lease in the new place is this host's own from the device state on.
        self._commit_arrived = False

    @property
    def _config(self) -> HostConfig:
        # Read at each use: the host's networks and volumes may change while it runs.
        return self._vms.config

    # The stream's side

    async def deliver(self, message: SourceMessage) -> None:
        await self._inbox.put(message)

    def source_closed(self, problem: AgentError | None = None) -> None:
        if problem is not None and self._close_problem is None:
            self._close_problem = problem
        if self._closed:
            return
        self._closed = True
        # A full inbox is drained first; `_next` then sees the flag.
        with contextlib.suppress(asyncio.QueueFull):
            self._inbox.put_nowait(_END)

    async def replies(self) -> AsyncIterator[PeerReply]:
        while True:
            reply = await self._outbox.get()
            if reply is None:
                return
            yield reply

    # The session

    async def run(self) -> None:
        try:
            await self._receive()
        except AgentError as exc:
            self.error = exc
            self._end(exc.message)
        except asyncio.CancelledError:
            self._end("the agent is stopping")
            raise
        except Exception as exc:
            log.exception("an incoming live migration failed unexpectedly")
            self.error = AgentError(f"host {self._config.name} failed to receive the VM: {exc}")
            self._end(str(exc))
        finally:
            self._outbox.put_nowait(None)

    async def _next(self) -> SourceMessage | None:
        """The next message, or None once the source closed the stream or fell silent."""
        if self._inbox.empty() and self._closed:
            return None
        timeout_s = self.settings.migration_stall_timeout_s
        if self._devices is not None:
            # After READY the source decides (it moves the lease or not) once READY
            # reaches it, up to one stall timeout later: wait longer than that before
            # reading what it decided, or a late decision would find the copy gone.
            timeout_s *= 2
        try:
            async with asyncio.timeout(timeout_s):
                message = await self._inbox.get()
        except TimeoutError:
            return None
        return message

    async def _receive(self) -> None:
        offer = await self._next()
        if not isinstance(offer, Offer):
            raise InvalidArgument("the first message of a migration stream must be its offer")
        skeleton = self._accept(offer)
        self._reply(PeerReply(Reply.ACCEPTED, skeleton.view()))
        while True:
            message = await self._next()
            if message is None:
                if self._lease_moved_here():
                    log.warning(
                        "VM %s: the source %s went away after handing the lease over; resuming here",
                        skeleton.label,
                        offer.source_host,
                    )
                    break
                if self._close_problem is not None:
                    raise self._close_problem
                raise Unavailable(
                    f"the source host {offer.source_host} went away or fell silent during the live migration "
                    f"of VM {skeleton.label}"
                )
            if isinstance(message, PagesChunk):
                if not self._pages_arrived:
                    self._pages_arrived = True
                    self._crash_points.reach(DESTINATION_COPYING)
                self._take_pages(message)
            elif isinstance(message, DiskChunk):
                await self._take_disk(message)
            elif isinstance(message, DeviceState):
                await self._take_device_state(message)
            elif isinstance(message, Commit):
                self._crash_points.reach(DESTINATION_COMMITTING)
                if self._devices is None:
                    raise InvalidArgument("commit: arrived before the device state")
                self._commit_arrived = True
                break
            else:
                raise InvalidArgument("offer: a migration stream has only one")
        await self._resume()

    def _reply(self, reply: PeerReply) -> None:
        self._outbox.put_nowait(reply)

    # Offer

    def _accept(self, offer: Offer) -> HostedVm:
        """Check the offer and create the skeleton that reserves the VM's memory; no await here."""
        vms, config, spec = self._vms, self._config, offer.spec
        reasons: list[str] = []
        if config.profile.traits.library_server:
            reasons.append(f"host {config.name} is a library server: it stores VMs at rest and runs none")
        elif not config.profile.traits.live_migration:
            reasons.append(f"host {config.name} runs Hyper-V 2008, which moves VMs by quick migration only")
        reasons += vms.compatibility(spec, offer.cpu)
        if offer.memory_pages != spec.memory_pages:
            raise InvalidArgument(
                f"offer.memory_pages: {offer.memory_pages} does not match {spec.memory_mb} MB of memory"
            )
        if not reasons:
            try:
                validate_spec(spec, config)
                vms.check_configuration(spec)
            except AgentError as exc:
                reasons.append(exc.message)
        if not reasons:
            reasons += self._storage_reasons(offer)
        if reasons:
            raise FailedPrecondition(f"host {config.name} cannot take VM {spec.label}: " + "; ".join(reasons))
        vm_dir = self._files.vm_dir(spec)
        skeleton = HostedVm(
            spec=spec,
            vm_dir=vm_dir,
            state=PowerState.MIGRATING,
            state_since=vms.clock.time(),
            lease_watch=self._files.lease_watch(vm_dir),
            lease_generation=offer.lease_generation,
            disk_name=self._disks.disk_name,
            cpu=offer.cpu,
            migration_id=offer.migration_id,
        )
        self._offer, self._skeleton = offer, skeleton
        vms.expect(skeleton)
        self._memory = PageVersions(offer.memory_pages)
        self._codec = PageCodec(spec.id)
        if offer.copy_disk:
            self._files.remove_vm_dir(vm_dir)  # remains of an earlier attempt: no vm.json there
            self._created_dir = True
            vm_dir.mkdir(parents=True)
            self._disk = self._disks.open_blocks(
                vm_dir / self._disks.disk_name, create_bytes=spec.disk_gb * GIB
            )
        log.info(
            "VM %s: live migration %s from %s accepted; %d MB reserved",
            spec.label,
            offer.migration_id,
            offer.source_host,
            spec.memory_mb,
        )
        return skeleton

    def _storage_reasons(self, offer: Offer) -> list[str]:
        files, spec = self._files, offer.spec
        where = f"{spec.storage.kind.label} {spec.storage.name}"
        vm_dir = files.vm_dir(spec)
        try:
            if offer.copy_disk:
                if files.has_vm(vm_dir):
                    return [f"{where} already holds files of VM {spec.label}"]
                check_lun_free(spec, files.vm_ids_on(spec.storage))
                capacity = check_storage_visible(spec.storage, self._config)
                check_storage_room(spec, capacity, files.used_bytes(spec.storage))
                return []
            if spec.storage.kind is StorageKind.LOCAL_DISK:
                return [f"the files of VM {spec.label} are on a local disk of host {offer.source_host}"]
            if not files.has_vm(vm_dir):
                return [f"VM {spec.label} has no files on {where} as seen from host {self._config.name}"]
            lease = files.read_lease(vm_dir)
        except AgentError as exc:
            return [exc.message]
        if lease is not None and lease.generation >= offer.lease_generation:
            return [
                f"stale lease generation {offer.lease_generation}: the storage of VM {spec.label} "
                f"already holds {lease.generation}"
            ]
        return []

    # Pages, disk, device state

    def _take_pages(self, chunk: PagesChunk) -> None:
        memory, codec = self._memory, self._codec
        assert memory is not None and codec is not None
        pages = chunk.pages
        if len(pages) and max(pages) >= memory.pages:
            raise InvalidArgument(f"pages: page {max(pages)} is beyond the VM's {memory.pages} pages")
        versions = codec.decode(pages, chunk.data, chunk.crc32)
        if len(pages) and pages[-1] - pages[0] == len(pages) - 1:
            memory.versions[pages[0] : pages[-1] + 1] = versions
        else:
            target = memory.versions
            for page, version in zip(pages, versions, strict=True):
                target[page] = version

    async def _take_disk(self, extent: DiskChunk) -> None:
        if self._disk is None:
            raise InvalidArgument("disk: this migration does not copy the disk")
        if zlib.crc32(extent.data) != extent.crc32:
            raise Corrupted(f"a disk extent at {extent.offset} arrived damaged (CRC-32 mismatch)")
        if extent.offset < 0 or extent.offset + len(extent.data) > self._disk.size:
            raise InvalidArgument(f"disk: an extent at {extent.offset} does not fit the virtual disk")
        await asyncio.to_thread(self._disk.write, extent.offset, extent.data)

    async def _take_device_state(self, state: DeviceState) -> None:
        memory, offer, skeleton = self._memory, self._offer, self._skeleton
        assert memory is not None and offer is not None and skeleton is not None
        digest = memory.digest()
        if digest != state.memory_digest:
            raise Corrupted(
                f"the memory image of VM {skeleton.label} received on host {self._config.name} "
                "differs from the source's at the pause"
            )
        if self._disk is not None:
            await asyncio.to_thread(self._disk.sync)
            # This copy's own lease; the source marks its old files once we are READY.
            lease = Lease(offer.lease_generation, self._config.name)
            await asyncio.to_thread(self._files.write_lease, skeleton.vm_dir, lease)
        self._devices = state.devices
        self._reply(PeerReply(Reply.READY, skeleton.view(), digest))

    def _lease_moved_here(self) -> bool:
        """After READY on shared storage: whether the source handed the lease over before it vanished."""
        return self._devices is not None and self._is_ours()

    def _is_ours(self) -> bool:
        """Whether the VM became this host's: its lease names this host with the offered generation.

        When the files move too, the new place's lease is this host's own from the
        device state on; there the commit message tells, or else the lease the source
        moved at the old place, if this host sees that storage too.
        """
        offer, skeleton = self._offer, self._skeleton
        if offer is None or skeleton is None:
            return False
        if offer.copy_disk and self._commit_arrived:
            return True
        vm_dir = skeleton.vm_dir
        if offer.copy_disk:
            old = offer.source_storage
            if old is None or old.kind is StorageKind.LOCAL_DISK or not self._sees(old):
                return False  # the source's own disk: only the commit message can tell
            vm_dir = self._files.storage_root(old) / skeleton.spec.id
        try:
            lease = self._files.read_lease(vm_dir)
        except AgentError:
            return False
        return lease == Lease(offer.lease_generation, self._config.name)

    def _sees(self, storage: StorageRef) -> bool:
        try:
            check_storage_visible(storage, self._config)
        except AgentError:
            return False
        return True

    # Resume or discard

    async def _resume(self) -> None:
        files, name, offer, vm = self._files, self._config.name, self._offer, self._skeleton
        assert offer is not None and vm is not None
        if not offer.copy_disk:
            lease = files.read_lease(vm.vm_dir)
            if lease != Lease(offer.lease_generation, name):
                held = f"{lease.owner} (generation {lease.generation})" if lease else "nobody"
                raise FailedPrecondition(
                    f"the lease of VM {vm.label} is held by {held}, not by host {name} "
                    f"(generation {offer.lease_generation}): it is not resumed here"
                )
        # On record before anything else: an agent that dies from here on finds the VM again.
        self._adopt()
        await asyncio.to_thread(files.write_vm_config, vm.vm_dir, vm.spec)
        digest = self._start_here()
        self._reply(PeerReply(Reply.RESUMED, vm.view(), digest))

    def _adopt(self) -> None:
        """Make the skeleton one of this host's VMs, persisted; it is no longer discarded."""
        vm = self._skeleton
        assert vm is not None
        self._skeleton = None
        self._adopted = vm
        self._vms.adopt(vm)

    def _start_here(self) -> str:
        """Resume the adopted VM's guest from the memory and devices received; return its digest."""
        vms, offer, vm = self._vms, self._offer, self._adopted
        memory, devices = self._memory, self._devices
        assert offer is not None and vm is not None and memory is not None and devices is not None
        if self._disk is not None:
            self._disk.close()
            self._disk = None
        vm.journal = self._disks.open_journal(vm.disk)
        digest = memory.digest()
        vm.guest = GuestModel.resumed(vm.spec.id, memory, vm.spec.effective_workload, devices)
        vm.migration_id = ""
        vm.state = transition(vm.label, vm.state, PowerState.RUNNING)
        vm.state_since = vms.clock.time()
        vms.persist(vm)
        vms.start_guest(vm)
        log.info(
            "VM %s: live migration %s from %s resumed here at journal seq %d",
            vm.label,
            offer.migration_id,
            offer.source_host,
            devices.journal.last_seq,
        )
        return digest

    def _end(self, why: str) -> None:
        """After a failure: keep the VM if it became this host's, else discard the skeleton."""
        if self._adopted is not None and self._adopted.state is PowerState.MIGRATING:
            self._keep(why)
        elif self._skeleton is not None and self._is_ours():
            self._adopt()
            self._keep(why)
        else:
            self._discard(why)

    def _keep(self, why: str) -> None:
        """The VM is this host's although its migration failed: resume it, or keep it failed."""
        vm, offer = self._adopted, self._offer
        assert vm is not None and offer is not None
        if self._devices is not None:
            try:
                self._files.write_vm_config(vm.vm_dir, vm.spec)
                self._start_here()
                log.warning("VM %s: resumed here although its live migration failed: %s", vm.label, why)
                return
            except Exception as exc:
                why = f"{why}; resuming it failed: {getattr(exc, 'message', exc)}"
        if self._disk is not None:
            self._disk.close()
            self._disk = None
        release_guest(vm)
        vm.migration_id, vm.cpu = "", None
        vm.state = transition(vm.label, vm.state, PowerState.FAILED)
        vm.state_since = self._vms.clock.time()
        vm.reason = f"its live migration {offer.migration_id} from host {offer.source_host} failed: {why}"
        self._vms.persist(vm)
        log.error("VM %s: kept here, not running: %s", vm.label, vm.reason)

    def _discard(self, why: str) -> None:
        """Give the skeleton up: the reservation ends, files this session created go."""
        skeleton = self._skeleton
        if skeleton is None:
            return
        self._skeleton = None
        self._vms.give_up(skeleton)
        if self._disk is not None:
            self._disk.close()
            self._disk = None
        if self._created_dir:
            self._files.remove_vm_dir(skeleton.vm_dir)
        log.warning(
            "VM %s: incoming live migration %s discarded: %s", skeleton.label, skeleton.migration_id, why
        )
