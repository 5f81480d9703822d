"""Moves across the cluster boundary: which transfer a stopped or saved VM takes, and why.

Inside one cluster a VM moves by live or quick migration over the storage every node
shares. Into a cluster, out of one, between clusters or between standalone hosts, VMM
2008 R2 moves a stopped or saved VM by a *transfer*:

- **SAN transfer**: the VM's files stay on their LUN and the LUN's ownership (its
  masking) moves to the destination; no file byte is copied, so it takes seconds
  whatever the VM's size. Into a cluster every node must see the LUN (VMM checks each
  one and creates the cluster disk resource). Out of a cluster only from a LUN the VM
  has to itself, never from a CSV, and not under VMM 2008. Pass-through disks on the
  SAN move with it where the destination sees them (2008 R2); a local one must first
  be converted to a virtual disk.
- **Network transfer**: the files are copied agent to agent, to storage the
  destination chooses; it works wherever the destination can hold the VM.

A move into a cluster makes the VM highly available (VMM asks during placement; the
request's `make_ha` is the answer), a move out of one ends that. Purely computational,
no side effects: the migration service gathers the records and acts on the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from manager.core.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from manager.core.levels import LevelTraits
from manager.core.migration import check_ha_fits
from manager.core.model import (
    ClusterRecord,
    HostRecord,
    MigrationKind,
    StorageKind,
    StorageLocation,
    VmRecord,
)
from manager.core.operations import disk_label
from manager.core.states import VmState

# A VM crosses the cluster boundary at rest: its memory is on storage or gone.
TRANSFERABLE_STATES = frozenset({VmState.STOPPED, VmState.SAVED})


class Transfer(Enum):
    """How the request asks a move across the cluster boundary to be made."""

    AUTO = "auto"  # by SAN where the LUN allows it, else over the network
    SAN = "san"
    NETWORK = "network"


@dataclass(frozen=True)
class TransferPlan:
    """How a VM crosses the boundary, and what it is afterwards."""

    kind: MigrationKind  # SAN_TRANSFER or NETWORK_TRANSFER
    highly_available_after: bool
    # Why SAN was not possible when a network transfer was chosen (`auto`): shown so
    # that the result says why the bytes were copied.
    san_refusals: tuple[str, ...] = ()


def crosses_cluster_boundary(source: HostRecord, target: HostRecord) -> bool:
    """Whether a move leaves the storage the two hosts share as nodes of one cluster."""
    return source.cluster is None or source.cluster != target.cluster


def check_at_rest(vm: VmRecord, source: HostRecord, target: HostRecord) -> None:
    """A VM crosses the cluster boundary stopped or saved, as in VMM. Between standalone
    hosts a running VM's storage migration moves it too, which the refusal says."""
    if vm.state not in TRANSFERABLE_STATES:
        live = ""
        if source.cluster is None and target.cluster is None:
            live = (
                f"; `havm vm migrate-storage {vm.name} --to {target.name}` moves it while it runs, "
                "copying its files"
            )
        raise FailedPreconditionError(
            f"VM {vm.name} is {vm.state.value}: a move to {target.name} crosses the cluster boundary, "
            f"which a VM does stopped or saved (`havm vm save {vm.name}` keeps its memory){live}"
        )


def same_datacenter(here: ClusterRecord | None, there: ClusterRecord | None) -> str | None:
    """The datacenter two different clusters share, between which running VMs move by
    VMotion (and Storage VMotion); None when they share none."""
    if here is None or there is None or here.name == there.name or here.datacenter is None:
        return None
    return here.datacenter if here.datacenter == there.datacenter else None


def check_not_across_datacenters(
    vm: VmRecord, here: ClusterRecord | None, there: ClusterRecord | None
) -> None:
    """VMotion stays inside a datacenter: a running VM is not moved to another one."""
    if vm.state in TRANSFERABLE_STATES or here is None or there is None:
        return
    if here.datacenter is not None and there.datacenter is not None and here.datacenter != there.datacenter:
        raise FailedPreconditionError(
            f"VM {vm.name} cannot move from cluster {here.name} (datacenter {here.datacenter}) to cluster "
            f"{there.name} (datacenter {there.datacenter}): VMotion moves running VMs between the ESX "
            "clusters of one datacenter"
        )


def check_storage_move_stays(
    vm: VmRecord, source: HostRecord, target: HostRecord, datacenter: str | None = None
) -> None:
    """A running VM's storage migration to another host never takes it out of its cluster
    (a highly available VM leaves a cluster at rest, by SAN or network transfer), except
    between the ESX clusters of one `datacenter`, where Storage VMotion moves it."""
    if datacenter is not None:
        return
    if source.cluster is not None and target.cluster != source.cluster:
        raise FailedPreconditionError(
            f"VM {vm.name} cannot move its files from {source.name} to {target.name} while it runs: "
            f"{target.name} is outside cluster {source.cluster}, which a VM leaves stopped or saved "
            f"(`havm vm save {vm.name}`, then `havm vm migrate {vm.name} --to {target.name}`)"
        )


def highly_available_after(vm: VmRecord, target: HostRecord, make_ha: bool) -> bool:
    """A VM on a cluster node is highly available: one that is not may move there only
    when the request makes it so; on a standalone host no VM is."""
    if target.cluster is None:
        return False
    if not make_ha:
        check_ha_fits(
            vm, target, "make it highly available as it moves with --make-ha, or choose a standalone host"
        )
    return True


def _sees(host: HostRecord | None, lun: str) -> bool:
    return host is not None and any(v.name == lun and v.kind is StorageKind.LUN for v in host.volumes)


def san_refusals(
    vm: VmRecord,
    source: HostRecord,
    target: HostRecord,
    nodes: Iterable[str],
    hosts: Mapping[str, HostRecord],
    others: Iterable[VmRecord],
    level: LevelTraits,
) -> list[str]:
    """Every reason the VM cannot cross by SAN; empty when it can. `nodes` are the
    target cluster's nodes (none for a standalone target), `others` every other VM."""
    reasons: list[str] = []
    storage = vm.storage
    leaves_cluster = source.cluster is not None and source.cluster != target.cluster
    if leaves_cluster and not level.san_transfer_out_of_cluster:
        reasons.append(f"{level.name} has no SAN transfer out of a cluster")
    if storage is None:
        reasons.append(f"the manager has no record of where VM {vm.name}'s files are")
    elif storage.kind is StorageKind.CSV:
        reasons.append(
            f"its files are on CSV volume {storage.name}: a VM crosses the cluster boundary by SAN "
            "only from a LUN of its own that is not a CSV"
        )
    elif storage.kind is StorageKind.LOCAL_DISK:
        reasons.append(f"its files are on local disk {storage.name} of host {source.name}, not on the SAN")
    else:
        reasons.extend(_lun_reasons(storage.name, "its files are on", vm, target, nodes, hosts))
        sharing = sorted(o.name for o in others if o.id != vm.id and storage.name in o.luns())
        if sharing:
            reasons.append(
                f"LUN {storage.name} is also used by VM {', '.join(sharing)}: its ownership can move "
                "only with every VM on it"
            )
    for disk in vm.passthrough_disks:
        if disk.kind is StorageKind.LOCAL_DISK:
            reasons.append(
                f"pass-through disk {disk.name} is a local disk of host {source.name}: "
                + _convert_or_detach(vm, disk)
            )
        elif not level.san_passthrough_disks and target.cluster is None:
            reasons.append(
                f"{level.name} moves no pass-through disk to a standalone host: "
                + _convert_or_detach(vm, disk)
            )
        else:
            reasons.extend(_lun_reasons(disk.name, "pass-through disk", vm, target, nodes, hosts))
    return reasons


def _lun_reasons(
    lun: str,
    what: str,
    vm: VmRecord,
    target: HostRecord,
    nodes: Iterable[str],
    hosts: Mapping[str, HostRecord],
) -> list[str]:
    members = list(nodes)
    label = f"{what} LUN {lun}"
    if members:
        blind = [n for n in members if not _sees(hosts.get(n), lun)]
        if blind:
            verb = "does" if len(blind) == 1 else "do"
            return [
                f"{label}, which not every node of cluster {target.cluster} sees: "
                f"{', '.join(blind)} {verb} not see it"
            ]
        return []
    if not _sees(target, lun):
        return [f"{label}, which host {target.name} does not see"]
    return []


def _convert_or_detach(vm: VmRecord, disk: StorageLocation) -> str:
    label = disk_label(disk)
    return (
        "it must be converted to a virtual disk first "
        f"(`havm vm convert-disk {vm.name} {label}`, the VM stopped), or detached "
        f"(`havm vm detach-disk {vm.name} --passthrough {label}`)"
    )


def network_refusals(vm: VmRecord, source: HostRecord, target: HostRecord, level: LevelTraits) -> list[str]:
    """Every reason the VM's files cannot be copied over the network: a pass-through disk
    is not a file, so a local one (or, under VMM 2008, any, to a standalone host) must
    be converted first, and a SAN one must be seen by the destination."""
    reasons = []
    for disk in vm.passthrough_disks:
        if disk.kind is StorageKind.LOCAL_DISK or (
            not level.san_passthrough_disks and target.cluster is None
        ):
            reasons.append(
                f"pass-through disk {disk.name} cannot be copied over the network: "
                + _convert_or_detach(vm, disk)
            )
        elif not _sees(target, disk.name):
            reasons.append(
                f"host {target.name} does not see pass-through LUN {disk.name}: "
                + _convert_or_detach(vm, disk)
            )
    return reasons


def plan_transfer(
    requested: Transfer,
    vm: VmRecord,
    source: HostRecord,
    target: HostRecord,
    nodes: Iterable[str],
    hosts: Mapping[str, HostRecord],
    others: Iterable[VmRecord],
    level: LevelTraits,
    make_ha: bool,
) -> TransferPlan:
    """How the VM crosses the boundary to `target`, or FailedPreconditionError naming
    every reason it cannot in the way asked."""
    ha = highly_available_after(vm, target, make_ha)
    check_at_rest(vm, source, target)
    san = san_refusals(vm, source, target, nodes, hosts, others, level)
    if requested is Transfer.SAN:
        if san:
            raise FailedPreconditionError(
                f"VM {vm.name} cannot move to {target.name} by SAN: {'; '.join(san)}"
            )
        return TransferPlan(MigrationKind.SAN_TRANSFER, ha)
    if requested is Transfer.AUTO and not san:
        return TransferPlan(MigrationKind.SAN_TRANSFER, ha)
    network = network_refusals(vm, source, target, level)
    if network and requested is Transfer.AUTO:
        raise FailedPreconditionError(
            f"VM {vm.name} cannot move to {target.name}: not by SAN, as {'; '.join(san)}; "
            f"not over the network, as {'; '.join(network)}"
        )
    if network:
        raise FailedPreconditionError(
            f"VM {vm.name} cannot move to {target.name} over the network: {'; '.join(network)}"
        )
    return TransferPlan(MigrationKind.NETWORK_TRANSFER, ha, tuple(san) if requested is Transfer.AUTO else ())


def check_network_storage(vm: VmRecord, storage: StorageLocation) -> None:
    """A network transfer copies the files elsewhere: never onto the shared volume they
    are on (a local disk of the same name on another host is another disk)."""
    if storage == vm.storage and storage.kind is not StorageKind.LOCAL_DISK:
        raise InvalidArgumentError(
            f"storage: VM {vm.name}'s files already are on {storage.kind.value} {storage.name}; a network "
            "transfer copies them to other storage (a SAN transfer moves the LUN: --transfer san)"
        )


def check_transfer_inside_cluster(requested: Transfer, source: HostRecord, target: HostRecord) -> None:
    """Inside one cluster a VM moves by live or quick migration: no transfer to choose."""
    if requested is not Transfer.AUTO:
        raise InvalidArgumentError(
            f"transfer: hosts {source.name} and {target.name} are nodes of cluster {source.cluster}, "
            "where a VM moves by live or quick migration; a SAN or network transfer is for moves into, "
            "out of or between clusters"
        )


# --- the library ---------------------------------------------------------------------


def choose_library(vm: VmRecord, hosts: Iterable[HostRecord], name: str) -> HostRecord:
    """The library server a VM is stored in: the one named, else the only one."""
    libraries = sorted((h for h in hosts if h.capabilities.library_server), key=lambda h: h.name)
    if name:
        chosen = next((h for h in hosts if h.name == name), None)
        if chosen is None:
            raise NotFoundError(f"library server {name} does not exist")
        if not chosen.capabilities.library_server:
            known = ", ".join(h.name for h in libraries) or "none"
            raise InvalidArgumentError(
                f"library: host {name} is not a library server (library servers: {known})"
            )
        return chosen
    if not libraries:
        raise FailedPreconditionError(
            f"VM {vm.name} cannot be stored: the cluster has no library server (a host with "
            "`profile: library` in the topology)"
        )
    if len(libraries) > 1:
        raise InvalidArgumentError(
            f"library: say which library server stores VM {vm.name} ({', '.join(h.name for h in libraries)})"
        )
    return libraries[0]


def check_storable(vm: VmRecord, source: HostRecord | None, library: HostRecord) -> None:
    """A VM goes into the library stopped or saved, from a host that runs VMs."""
    if source is not None and source.name == library.name:
        raise FailedPreconditionError(f"VM {vm.name} already is stored in library server {library.name}")
    if source is not None and source.capabilities.library_server:
        raise FailedPreconditionError(
            f"VM {vm.name} is stored in library server {source.name}: deploy it onto a host "
            f"(`havm vm deploy {vm.name} --to HOST`) rather than moving it between libraries"
        )
    if vm.state not in TRANSFERABLE_STATES:
        raise FailedPreconditionError(
            f"VM {vm.name} is {vm.state.value}: a VM is stored in the library stopped or saved "
            f"(`havm vm save {vm.name}` keeps its memory, `havm vm stop {vm.name}` shuts it down)"
        )


def check_deployable(vm: VmRecord, source: HostRecord | None, target: HostRecord | None) -> None:
    """A VM is deployed from the library onto a host that runs VMs."""
    if source is None or not source.capabilities.library_server:
        where = f"on host {vm.host}" if vm.host else "on no host"
        raise FailedPreconditionError(
            f"VM {vm.name} is not stored in the library ({where}): `havm vm migrate {vm.name} --to HOST` "
            "moves it"
        )
    if target is not None and target.capabilities.library_server:
        raise FailedPreconditionError(
            f"VM {vm.name} cannot be deployed onto {target.name}: it is a library server, which runs no VM"
        )


def check_runs_there(vm: VmRecord, target: HostRecord) -> None:
    """A running VM never moves onto a library server: only `vm store` puts a VM there,
    at rest."""
    if target.capabilities.library_server and vm.state not in TRANSFERABLE_STATES:
        raise FailedPreconditionError(
            f"VM {vm.name} is {vm.state.value}: library server {target.name} runs no VM; store it "
            f"stopped or saved (`havm vm save {vm.name}`, then `havm vm store {vm.name}`)"
        )
