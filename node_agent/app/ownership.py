"""Who owns a VM's files: claiming them at creation, taking them over from another host,
and finding them again after the agent restarts.

The storage lease decides it (core.lease); this module does the file work around
that decision in the order that keeps a crash harmless: the lease first, the disk,
and vm.json last, so that a directory without vm.json is an unfinished creation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from node_agent.app.guests import HostedVm
from node_agent.core.config import HostConfig
from node_agent.core.errors import AgentError, AlreadyExists, FailedPrecondition, NotFound
from node_agent.core.host_storage import HostStorage, RegistryEntry
from node_agent.core.lease import FIRST_GENERATION, Lease, recovery_verdict, take_over_lease
from node_agent.core.power import RESTART_ON_RECOVERY, PowerState
from node_agent.core.vm import StorageKind, VmSpec, check_lun_free, check_storage_room
from node_agent.core.vm_devices import check_can_leave

log = logging.getLogger(__name__)

# The reason a saved VM whose memory image is gone is FAILED, at restore and at recovery.
SAVED_STATE_MISSING = "its saved state file is missing"


@dataclass(frozen=True)
class Claim:
    """Files now owned by this host: the VM's state there, the lease it holds and the
    configuration written with them."""

    state: PowerState
    lease: Lease
    spec: VmSpec


def _where(spec: VmSpec) -> str:
    return f"{spec.storage.kind.label} {spec.storage.name}"


def claim_new(
    files: HostStorage[Path],
    config: HostConfig,
    spec: VmSpec,
    vm_dir: Path,
    capacity: int,
    allow_shared_lun: bool = False,
) -> Claim:
    """Create a new VM's files, holding the first lease generation."""
    if files.has_vm(vm_dir):
        raise AlreadyExists(
            f"VM {spec.label} ({spec.id}) already has files on {_where(spec)}; take it over instead"
        )
    check_lun_free(spec, files.vm_ids_on(spec.storage), allow_shared_lun)
    files.remove_vm_dir(vm_dir)  # remains of an interrupted creation
    check_storage_room(spec, capacity, files.used_bytes(spec.storage))
    lease = Lease(FIRST_GENERATION, config.name)
    files.write_lease(vm_dir, lease)
    files.create_disk(vm_dir, spec.disk_gb)
    files.write_vm_config(vm_dir, spec)
    log.info("VM %s (%s) created on %s", spec.label, spec.id, _where(spec))
    return Claim(PowerState.STOPPED, lease, spec)


def take_over_files(
    files: HostStorage[Path], config: HostConfig, spec: VmSpec, vm_dir: Path, generation: int
) -> Claim:
    """Become the owner of a VM whose files another host left on shared storage.

    Writing the newer lease is what fences the previous owner's copy: its next
    journal write sees the lease and stops it. The disk and journal are kept.

    The resources of the VM's cluster group and its data disks are those stored with its
    files: an administrator adds resources on the host that holds the VM, a conversion
    makes data disks there, and the caller may not have learned of the latest yet.
    """
    if spec.storage.kind is StorageKind.LOCAL_DISK:
        raise FailedPrecondition(
            f"VM {spec.label} is on {_where(spec)}, which no other host sees: only VMs on a CSV "
            "volume or LUN can be taken over"
        )
    if not files.has_vm(vm_dir):
        raise NotFound(f"VM {spec.label} ({spec.id}) has no files on {_where(spec)} to take over")
    stored, previous_owner = files.read_vm_config(vm_dir)
    if previous_owner != config.name:
        check_can_leave(spec, previous_owner or "(unknown)")
    spec = replace(spec, cluster_resources=stored.cluster_resources, data_disks=stored.data_disks)
    lease = files.swap_lease(
        vm_dir, lambda on_storage: take_over_lease(spec.label, config.name, generation, on_storage)
    )
    if not files.has_disk(vm_dir):
        files.create_disk(vm_dir, spec.disk_gb)
    files.write_vm_config(vm_dir, spec)
    state = PowerState.SAVED if files.saved_state_path(vm_dir).exists() else PowerState.STOPPED
    log.info(
        "VM %s (%s) taken over from host %s on %s with lease generation %d",
        spec.label,
        spec.id,
        previous_owner or "(unknown)",
        _where(spec),
        lease.generation,
    )
    return Claim(state, lease, spec)


def load_registered(
    files: HostStorage[Path], config: HostConfig, entry: RegistryEntry, disk_name: str
) -> HostedVm | None:
    """A VM of the registry as it is after a restart, or None when it is no longer ours.

    A VM that another host took over while this agent was away (vm.json names
    another owner, or the lease moved on) is forgotten and never started again.
    """
    vm_dir = Path(entry.path)
    try:
        spec, owner = files.read_vm_config(vm_dir)
        lease = files.read_lease(vm_dir)
    except AgentError as exc:
        log.warning("VM %s cannot be found again: %s", entry.vm_id, exc.message)
        return None
    # The lease decides: a VM that arrived by live migration is this host's from the
    # moment the lease names it, even if the agent died before rewriting vm.json.
    holds_lease = lease is not None and lease == Lease(entry.lease_generation or 0, config.name)
    why = (
        f"it now belongs to host {owner}"
        if owner != config.name and not holds_lease
        else recovery_verdict(config.name, entry.lease_generation, lease)
    )
    if why is not None:
        log.warning("VM %s was fenced while the agent was away (%s); forgetting it", spec.label, why)
        files.remove_registry(entry.vm_id)
        return None
    if owner != config.name:
        try:
            files.write_vm_config(vm_dir, spec)
        except OSError as exc:
            log.warning("VM %s: its configuration cannot name this host yet: %s", spec.label, exc)
    generation = entry.lease_generation
    if generation is None:
        generation = lease.generation if lease is not None else 0
    state, reason = entry.power_state, entry.reason
    has_saved_state = files.saved_state_path(vm_dir).exists()
    if state is PowerState.SAVING and has_saved_state:
        state = PowerState.SAVED  # the image was complete: it is written atomically
    elif state in RESTART_ON_RECOVERY:
        state = PowerState.STOPPED  # memory lost as at a power loss; restarted by the caller
        files.remove_saved_state(vm_dir)
    elif state is PowerState.SAVED and not has_saved_state:
        state, reason = PowerState.FAILED, SAVED_STATE_MISSING
    return HostedVm(
        cpu=entry.cpu if state is PowerState.SAVED else None,
        spec=spec,
        vm_dir=vm_dir,
        state=state,
        state_since=entry.state_since,
        lease_watch=files.lease_watch(vm_dir),
        lease_generation=generation,
        disk_name=disk_name,
        reason=reason,
    )
