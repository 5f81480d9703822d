"""A failover cluster's groups as VMM sees them, and how each node addresses its disks.

Every highly available VM is a cluster group owned by its host: the virtual machine
resource, its configuration, a physical-disk resource per LUN it uses (online on the
owner only, masked from the other nodes) or the CSV path its files are on (online on
every node), and whatever an administrator added. A migration or a failover moves the
group by moving the VM; deleting the VM removes the group with it; so the groups are
derived from the records, never stored apart from them.

A node gives the cluster disks it has online the drive letters its local disks leave
free (A and B stay the floppy drives'), in name order; once the letters run out (a
node of a 16-node cluster may own dozens of LUNs) a disk is addressed by its volume
GUID path, `\\\\?\\Volume{GUID}\\`. A CSV is `C:\\ClusterStorage\\VolumeN` on every node.
Purely computational.
"""

from __future__ import annotations

import string
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from manager.core.model import ClusterRecord, HostRecord, StorageKind, StorageLocation, VmRecord
from manager.core.states import VmState

# The first two letters are the floppy drives'.
DRIVE_LETTERS = string.ascii_uppercase[2:]
# Volume GUIDs are the volume's own, the same on every node: derived from its name.
_VOLUME_NAMESPACE = uuid.UUID("5d1f3b0e-9d55-4c1b-8e7a-3c2f6a0b7e11")
# States in which the VM resource is online (its worker process runs).
_ONLINE_STATES = frozenset(
    {VmState.RUNNING, VmState.PAUSED, VmState.STARTING, VmState.SAVING, VmState.MIGRATING}
)


class ResourceKind(Enum):
    VIRTUAL_MACHINE = "virtual_machine"
    VM_CONFIGURATION = "vm_configuration"
    PHYSICAL_DISK = "physical_disk"  # a LUN: online on the owner only
    CSV_PATH = "csv_path"  # a cluster shared volume: online on every node
    OTHER = "other"  # added by an administrator


@dataclass(frozen=True)
class GroupResource:
    name: str
    kind: ResourceKind
    type: str  # as the cluster names it
    online_on: tuple[str, ...]
    path: str = ""


@dataclass(frozen=True)
class ClusterGroup:
    name: str
    vm: str
    owner_node: str
    resources: tuple[GroupResource, ...]


def group_name(vm: str) -> str:
    """As VMM names the groups it creates."""
    return f"SCVMM {vm} Resources"


def volume_guid_path(volume: str) -> str:
    return f"\\\\?\\Volume{{{uuid.uuid5(_VOLUME_NAMESPACE, volume)}}}\\"


def csv_path(cluster: ClusterRecord, volume: str) -> str:
    """`C:\\ClusterStorage\\VolumeN`, N counting the cluster's CSVs in its order."""
    csvs = [v.name for v in cluster.volumes if v.kind is StorageKind.CSV]
    number = csvs.index(volume) + 1 if volume in csvs else len(csvs) + 1
    return f"C:\\ClusterStorage\\Volume{number}"


def online_luns(node: str, vms: Iterable[VmRecord]) -> list[str]:
    """The LUNs a node has online: those holding the files of the VMs it owns."""
    return sorted(
        {
            vm.storage.name
            for vm in vms
            if vm.host == node and vm.storage is not None and vm.storage.kind is StorageKind.LUN
        }
    )


def drive_paths(node: HostRecord, luns: Sequence[str]) -> dict[str, str]:
    """How the node addresses each of its local disks and of `luns` (online there):
    `E:\\`, or the volume GUID path once the letters are gone. Keys are disk names."""
    taken: set[str] = set()
    paths: dict[str, str] = {}
    # A local disk named by a letter keeps it; the others take the next free ones.
    for disk in node.disks:
        if len(disk.name) == 1 and disk.name.upper() in DRIVE_LETTERS:
            taken.add(disk.name.upper())
            paths[disk.name] = f"{disk.name.upper()}:\\"
    free = [letter for letter in DRIVE_LETTERS if letter not in taken]
    for disk in node.disks:
        if disk.name not in paths:
            paths[disk.name] = f"{free.pop(0)}:\\" if free else volume_guid_path(f"{node.name}/{disk.name}")
    for lun in luns:
        paths[lun] = f"{free.pop(0)}:\\" if free else volume_guid_path(lun)
    return paths


def vm_path(
    vm: VmRecord, host: HostRecord | None, cluster: ClusterRecord | None, drives: dict[str, str]
) -> str:
    """Where the VM's files are as its host addresses them; empty while it has no host.
    `drives` is drive_paths of its host."""
    storage = vm.storage
    if host is None or storage is None:
        return ""
    if storage.kind is StorageKind.CSV:
        base = csv_path(cluster, storage.name) if cluster is not None else "C:\\ClusterStorage\\Volume1"
        return f"{base}\\{vm.name}"
    if host.capabilities.library_server and storage.kind is StorageKind.LOCAL_DISK:
        return f"\\\\{host.name}\\{storage.name}\\{vm.name}"  # the library share, as VMM shows it
    root = drives.get(storage.name, "")
    if storage.kind is StorageKind.LOCAL_DISK:
        return f"{root}Hyper-V\\{vm.name}" if root else ""
    return f"{root}{vm.name}" if root else ""


def vm_paths(
    vms: Sequence[VmRecord],
    hosts: dict[str, HostRecord],
    clusters: dict[str, ClusterRecord],
    every: Sequence[VmRecord],
) -> dict[str, str]:
    """Where each of `vms` has its files, by VM id; `every` is every VM (whose LUNs are
    online where decides the letters). Each host's drives are worked out once."""
    drives: dict[str, dict[str, str]] = {}
    paths = {}
    for vm in vms:
        host = hosts.get(vm.host or "")
        if host is None:
            continue
        if host.name not in drives:
            drives[host.name] = drive_paths(host, online_luns(host.name, every))
        paths[vm.id] = vm_path(vm, host, clusters.get(host.cluster or ""), drives[host.name])
    return paths


def cluster_groups(
    cluster: ClusterRecord, hosts: dict[str, HostRecord], vms: Sequence[VmRecord]
) -> tuple[ClusterGroup, ...]:
    """Every highly available VM's group on the cluster's nodes, by VM name."""
    nodes = [n for n in cluster.nodes if n in hosts]
    drives = {n: drive_paths(hosts[n], online_luns(n, vms)) for n in nodes}
    cluster_luns = {v.name for v in cluster.volumes if v.kind is StorageKind.LUN}
    groups = []
    for vm in sorted(vms, key=lambda v: v.name):
        if not vm.highly_available or vm.host not in drives:
            continue
        groups.append(_group(vm, cluster, nodes, drives[vm.host], cluster_luns))
    return tuple(groups)


def _group(
    vm: VmRecord, cluster: ClusterRecord, nodes: list[str], drives: dict[str, str], cluster_luns: set[str]
) -> ClusterGroup:
    owner = vm.host or ""
    running = (owner,) if vm.state in _ONLINE_STATES else ()
    resources = [
        GroupResource(f"Virtual Machine {vm.name}", ResourceKind.VIRTUAL_MACHINE, "Virtual Machine", running),
        GroupResource(
            f"Virtual Machine Configuration {vm.name}",
            ResourceKind.VM_CONFIGURATION,
            "Virtual Machine Configuration",
            (owner,),
        ),
    ]
    disks: list[StorageLocation] = [vm.storage] if vm.storage is not None else []
    disks += [d for d in vm.passthrough_disks if d.kind is StorageKind.LUN and d.name in cluster_luns]
    for disk in disks:
        if disk.kind is StorageKind.CSV:
            path = csv_path(cluster, disk.name)
            resources.append(
                GroupResource(path, ResourceKind.CSV_PATH, "Cluster Shared Volume", tuple(nodes), path)
            )
        elif disk.kind is StorageKind.LUN:
            # A pass-through disk is handed to the guest raw: the host mounts no volume.
            path = drives.get(disk.name, "") if disk == vm.storage else ""
            resources.append(
                GroupResource(
                    f"Cluster Disk {disk.name}", ResourceKind.PHYSICAL_DISK, "Physical Disk", (owner,), path
                )
            )
    for extra in vm.cluster_resources:
        resources.append(GroupResource(extra.name, ResourceKind.OTHER, extra.type, (owner,)))
    return ClusterGroup(group_name(vm.name), vm.name, owner, tuple(resources))
