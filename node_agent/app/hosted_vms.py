"""The VMs this host holds, and the one owner that adds, drops and records them.

Power operations, live migration in and out, network transfers, storage moves and the
letting go of stale copies all change which VMs this host has and what it remembers of
them. They share this object instead of each other, or the host: the VMs of this host,
the skeletons arriving by live migration (which hold memory but are not this host's
until they resume), the VMs whose files arrive by network transfer (nothing of them is
this host's until the last byte checked out, but their id is taken), the registry that
finds the VMs again after a restart, and fencing, which drops a copy whose storage
lease moved to another host. A VM that left is never written back: every record goes
through `persist`, which writes only VMs still here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from node_agent.app.guests import GuestHooks, HostedVm, release_guest, start_guest
from node_agent.core.clock import Clock
from node_agent.core.compatibility import compatibility_reasons
from node_agent.core.config import HostConfig
from node_agent.core.cpu import GuestCpu
from node_agent.core.errors import (
    AgentError,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    StorageFault,
)
from node_agent.core.host_storage import HostStorage, RegistryEntry
from node_agent.core.lease import Fenced, check_write
from node_agent.core.power import HOLDS_MEMORY, PowerState, transition
from node_agent.core.transfer import AT_REST
from node_agent.core.virtual_disks import VirtualDisks
from node_agent.core.vm import VmSpec, available_memory_mb
from node_agent.core.vm_devices import check_no_files_on, check_on_host

log = logging.getLogger(__name__)


class HostedVms:
    """This host's VMs and the skeletons arriving here; their registry and their fencing."""

    def __init__(
        self, config: HostConfig, files: HostStorage[Path], disks: VirtualDisks[Path], clock: Clock
    ) -> None:
        self._config = config
        self.files = files
        self.disks = disks
        self.clock = clock
        self._vms: dict[str, HostedVm] = {}
        self._incoming: dict[str, HostedVm] = {}
        # VMs arriving by network transfer: their spec and the transfer's id, by VM id.
        self._arriving_files: dict[str, tuple[VmSpec, str]] = {}

    # The host's description

    @property
    def config(self) -> HostConfig:
        """The host as it is now: an administrator may change its networks and volumes
        while it runs (app.host_admin), so it is read here at each use, never kept."""
        return self._config

    def reconfigure(self, config: HostConfig) -> None:
        """Serve a changed description from now on: its networks and volumes only."""
        same = self._config
        if (config.name, config.san_root, config.settings) != (same.name, same.san_root, same.settings):
            raise ValueError("only the networks and volumes of a running host can change")
        self._config = config

    # Reading

    def hosted(self, vm_id: str) -> HostedVm | None:
        """The VM of this host with this id, if it is still here."""
        return self._vms.get(vm_id)

    def all(self) -> list[HostedVm]:
        """This host's VMs, by id."""
        return [vm for _, vm in sorted(self._vms.items())]

    @property
    def incoming(self) -> Mapping[str, HostedVm]:
        """Skeletons of VMs arriving by live migration, by VM id."""
        return self._incoming

    def specs(self, arriving: bool = False) -> list[VmSpec]:
        """The configurations of this host's VMs, with `arriving` those of the skeletons and
        of the VMs arriving by network transfer too."""
        specs = [vm.spec for vm in self._vms.values()]
        if not arriving:
            return specs
        return (
            specs
            + [vm.spec for vm in self._incoming.values()]
            + [s for s, _ in self._arriving_files.values()]
        )

    def arriving_by_transfer(self, vm_id: str) -> str | None:
        """The id of the network transfer bringing this VM here, if one is under way."""
        arriving = self._arriving_files.get(vm_id)
        return arriving[1] if arriving is not None else None

    def check_not_arriving(self, spec: VmSpec) -> None:
        """No VM of this id may be created or received while it arrives by either way."""
        name = self.config.name
        if spec.id in self._incoming:
            raise AlreadyExists(f"VM {spec.label} ({spec.id}) is arriving on host {name} by live migration")
        transfer = self.arriving_by_transfer(spec.id)
        if transfer is not None:
            raise AlreadyExists(
                f"VM {spec.label} ({spec.id}) is arriving on host {name} by network transfer {transfer}"
            )

    def operable(self, vm_id: str) -> HostedVm:
        """The VM an operation is about, or why there is none to operate on."""
        if not vm_id:
            raise InvalidArgument("vm_id: is required")
        vm = self._vms.get(vm_id)
        if vm is None:
            skeleton = self._incoming.get(vm_id)
            if skeleton is not None:
                raise FailedPrecondition(
                    f"VM {skeleton.label} is arriving on host {self.config.name} by live migration "
                    f"(migration {skeleton.migration_id}); wait until it has arrived"
                )
            raise NotFound(f"host {self.config.name} has no VM with id {vm_id}")
        return vm

    def check_still_here(self, vm: HostedVm) -> None:
        """For an operation that waited for the VM's lock: the VM may have gone meanwhile."""
        if self._vms.get(vm.spec.id) is not vm:
            raise NotFound(f"VM {vm.label} was deleted meanwhile")

    @staticmethod
    def check_not_migrating(vm: HostedVm) -> None:
        if not vm.migration_id:
            return
        if vm.state in AT_REST:
            # A VM at rest moves by its files only: a network transfer or a storage move.
            raise FailedPrecondition(
                f"VM {vm.label} is {vm.state.value} and its files are being moved (migration "
                f"{vm.migration_id}); wait until the move has ended"
            )
        raise FailedPrecondition(
            f"VM {vm.label} is being live-migrated (migration {vm.migration_id}); "
            "wait until the migration has ended"
        )

    def held_mb(self) -> list[int]:
        """The memory of every VM that holds some, skeletons included: they reserve theirs."""
        held = [vm.spec.memory_mb for vm in self._vms.values() if vm.state in HOLDS_MEMORY]
        return held + [vm.spec.memory_mb for vm in self._incoming.values()]

    def memory_free_mb(self) -> int:
        return available_memory_mb(self.config, self.held_mb())

    def others(self, spec: VmSpec) -> list[VmSpec]:
        """The configurations of this host's VMs other than `spec`'s, arriving ones included."""
        return [s for s in self.specs(arriving=True) if s.id != spec.id]

    def check_configuration(self, spec: VmSpec) -> None:
        """What `spec` must satisfy here beside core.vm.validate_spec (core.vm_devices), and
        that its pass-through disks hold no VM's files, whichever host owns them."""
        check_on_host(spec, self.config, self.others(spec))
        self.check_passthrough_files(spec, "spec.passthrough_disks")

    def check_passthrough_files(self, spec: VmSpec, field: str) -> None:
        for i, disk in enumerate(spec.passthrough_disks):
            check_no_files_on(spec, i, self.files.vm_ids_on(disk), field)

    def compatibility(self, spec: VmSpec, cpu: GuestCpu | None) -> list[str]:
        """Every reason this host cannot take `spec` now; empty when it can."""
        reasons = compatibility_reasons(spec, cpu, self.config, self.memory_free_mb(), self.others(spec))
        here = self._vms.get(spec.id)
        if spec.id in self._incoming or (here is not None and not self.drop_if_fenced(here)):
            reasons.append(f"VM {spec.label} ({spec.id}) is already on host {self.config.name}")
        transfer = self.arriving_by_transfer(spec.id)
        if transfer is not None:
            reasons.append(
                f"VM {spec.label} ({spec.id}) is arriving on host {self.config.name} by network "
                f"transfer {transfer}"
            )
        return reasons

    # Coming and going

    def insert(
        self, spec: VmSpec, vm_dir: Path, state: PowerState, generation: int, cpu: GuestCpu | None = None
    ) -> HostedVm:
        """Make files this host now owns (created or taken over) one of its VMs, recorded."""
        vm = HostedVm(
            spec=spec,
            vm_dir=vm_dir,
            state=state,
            state_since=self.clock.time(),
            lease_watch=self.files.lease_watch(vm_dir),
            lease_generation=generation,
            disk_name=self.disks.disk_name,
            cpu=cpu,
        )
        self._vms[spec.id] = vm
        self.persist(vm)
        return vm

    def recovered(self, vm: HostedVm) -> None:
        """A VM found again in the registry after a restart: recorded there already."""
        self._vms[vm.spec.id] = vm

    def expect(self, skeleton: HostedVm) -> None:
        """A skeleton arriving by live migration: it reserves its memory from now on."""
        self._incoming[skeleton.spec.id] = skeleton

    def give_up(self, skeleton: HostedVm) -> None:
        """A skeleton that will not arrive: its reservation ends."""
        if self._incoming.get(skeleton.spec.id) is skeleton:
            del self._incoming[skeleton.spec.id]

    def expect_files(self, spec: VmSpec, transfer_id: str) -> None:
        """A VM whose files arrive by network transfer: its id is taken from now on."""
        self._arriving_files[spec.id] = (spec, transfer_id)

    def files_settled(self, spec: VmSpec, transfer_id: str) -> None:
        """The transfer ended: the VM was inserted, or nothing of it stays."""
        if self.arriving_by_transfer(spec.id) == transfer_id:
            del self._arriving_files[spec.id]

    def adopt(self, vm: HostedVm) -> None:
        """Make a VM that arrived by live migration one of this host's VMs, and persist it."""
        self.give_up(vm)
        self._vms[vm.spec.id] = vm
        self.persist(vm)

    def forget(self, vm: HostedVm) -> None:
        """Drop a VM that left this host; its files are no longer this host's concern."""
        self._drop(vm)
        log.info("VM %s (%s) left host %s", vm.label, vm.spec.id, self.config.name)

    def deleted(self, vm: HostedVm) -> None:
        """Drop a VM whose files were deleted (or left to the host that owns them)."""
        self._drop(vm)
        log.info("VM %s (%s) deleted", vm.label, vm.spec.id)

    def _drop(self, vm: HostedVm) -> None:
        if self._vms.get(vm.spec.id) is vm:
            del self._vms[vm.spec.id]
        self.files.remove_registry(vm.spec.id)

    # State and its record

    def set_state(self, vm: HostedVm, new: PowerState, reason: str = "") -> None:
        """The one way an operation changes a VM's power state: checked, stamped and recorded."""
        if self._vms.get(vm.spec.id) is not vm:
            # Fenced while an operation was under way (a shutdown's grace period).
            raise NotFound(f"VM {vm.label} is no longer on host {self.config.name}: it was fenced meanwhile")
        vm.state = transition(vm.label, vm.state, new)
        vm.state_since = self.clock.time()
        vm.reason = reason
        if new in (PowerState.STOPPED, PowerState.FAILED):
            vm.cpu = None
        self.persist(vm)

    def persist(self, vm: HostedVm) -> None:
        """Write the VM's registry entry, unless it left meanwhile."""
        if self._vms.get(vm.spec.id) is not vm:
            return  # forgotten meanwhile (fenced): an operation finishing late must not revive it
        entry = RegistryEntry(
            vm.spec.id,
            vm.spec.storage,
            str(vm.vm_dir),
            vm.state,
            vm.state_since,
            vm.reason,
            vm.lease_generation,
            vm.cpu,
        )
        try:
            self.files.write_registry(entry)
        except OSError as exc:
            log.error("VM %s: registry entry cannot be written: %s", vm.label, exc)

    # Guests

    def start_guest(self, vm: HostedVm) -> None:
        """Run the VM's guest; its failure or fencing comes back here."""
        if not vm.passthrough_journals:
            try:
                vm.passthrough_journals = [
                    self.disks.open_journal(self.files.passthrough_image(disk))
                    for disk in vm.spec.passthrough_disks
                ]
            except (OSError, AgentError) as exc:
                reason = f"a pass-through disk cannot be opened: {getattr(exc, 'message', exc)}"
                self.set_state(vm, PowerState.FAILED, reason)
                raise StorageFault(f"VM {vm.label}: {reason}") from None
        hooks = GuestHooks(
            self.config.name,
            self.config.settings.guest_tick_s,
            self._guest_failed,
            self._fenced,
            self.clock,
        )
        start_guest(vm, hooks)

    def _guest_failed(self, vm: HostedVm, reason: str) -> None:
        self.set_state(vm, PowerState.FAILED, reason)

    # Fencing

    def check_lease(self, vm: HostedVm) -> None:
        """A copy that lost its lease must not start: forget it and say why."""
        try:
            check_write(vm.label, self.config.name, vm.lease_generation, vm.lease_watch.current())
        except Fenced as exc:
            self._forget_fenced(vm, exc)
            raise

    def drop_if_fenced(self, vm: HostedVm) -> bool:
        """Forget an idle copy that lost its lease (the VM went away and comes back)."""
        if vm.state in HOLDS_MEMORY:
            return False  # its guest finds out at its next write, or an operation does
        try:
            check_write(vm.label, self.config.name, vm.lease_generation, vm.lease_watch.current())
        except Fenced as exc:
            self._forget_fenced(vm, exc)
            return True
        return False

    def fence(self, vm: HostedVm, exc: Fenced) -> None:
        """Drop a copy found fenced while its guest was stopped (a live migration's blackout)."""
        release_guest(vm)
        self._fenced(vm, exc)

    def _fenced(self, vm: HostedVm, exc: Fenced) -> None:
        """The guest found its lease gone: it already stopped and released its memory."""
        if vm.state is not PowerState.STOPPED:
            vm.state = transition(vm.label, vm.state, PowerState.STOPPED)
        self._forget_fenced(vm, exc)

    def _forget_fenced(self, vm: HostedVm, exc: Fenced) -> None:
        """Drop a fenced VM from this host; its files are the new owner's."""
        log.warning("%s", exc.message)
        self._drop(vm)
