"""Where a new VM goes: intelligent placement as a pure request -> decision function.

Purely computational, no side effects: the caller builds a snapshot of every host's
room from the store, asks `place`, and acts on the decision. When nothing fits, the
decision carries one reason per host so the operator learns why, not just that.

Rules (those of a failover cluster under VMM): a highly available VM goes only on an
`ok` node of a cluster, its files on cluster storage the node sees (a CSV volume with
room, or a named LUN no other VM uses); a VM that is not highly available goes only on
an `ok` standalone host, its files on the host's local disk with most room (or the
named one). Requested networks must exist on the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from manager.core.errors import InvalidArgumentError, NotFoundError
from manager.core.model import StorageKind, StorageLocation
from manager.core.states import HostState

MAX_STARS = 5.0


class PlacementGoal(Enum):
    """VMM's two placement goals."""

    LOAD_BALANCING = "load_balancing"  # more stars for more room left: spread the load
    RESOURCE_MAXIMIZATION = "resource_maximization"  # more stars for fuller hosts: pack


class RatingReason(Enum):
    """Why a host rates fewer stars, or none. Blocking ones give zero stars."""

    LIBRARY_SERVER = "library_server"  # stores VMs and runs none
    HOST_STATE = "host_state"  # not ok: not responding, fenced, ...
    MAINTENANCE = "maintenance"  # in maintenance mode
    NOT_CLUSTER_NODE = "not_cluster_node"  # a highly available VM needs a cluster node
    CLUSTER_NODE = "cluster_node"  # a VM that is not highly available never goes on one
    MEMORY = "memory"  # not enough free memory
    CPU_CORES = "cpu_cores"  # fewer cores than the VM has vCPUs
    NETWORK_MISSING = "network_missing"  # a network of the VM does not exist there
    STORAGE = "storage"  # storage not seen, no room, or a LUN in use
    CLUSTER_OVERCOMMITTED = "cluster_overcommitted"  # its cluster is overcommitted already
    WOULD_OVERCOMMIT = "would_overcommit"  # the VM there would overcommit its cluster
    MEMORY_LOAD = "memory_load"  # fewer stars: memory left after placement
    CPU_LOAD = "cpu_load"  # fewer stars: CPU load after placement


@dataclass(frozen=True)
class Refusal:
    """One reason a host cannot take a VM, as code and sentence."""

    code: RatingReason
    detail: str  # "has 2048 MB free, needs 4096 MB": the host's name goes before it


@dataclass(frozen=True)
class StorageRoom:
    """A disk or volume a host sees, with what is left on it."""

    name: str
    kind: StorageKind
    free_gb: int
    # VMs whose files are there; a LUN holds at most one.
    used_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostCapacity:
    name: str
    cluster: str | None
    state: HostState
    usable_memory_mb: int  # physical memory minus the host reserve
    memory_free_mb: int  # what is left for new running VMs
    cores: int
    running_vcpus: int
    storage: tuple[StorageRoom, ...]
    networks: tuple[str, ...]
    # A library server: it stores VMs (`vm store`) and is never a placement's choice.
    library_server: bool = False


@dataclass(frozen=True)
class PlacementSnapshot:
    hosts: tuple[HostCapacity, ...]

    def host(self, name: str) -> HostCapacity | None:
        return next((h for h in self.hosts if h.name == name), None)


@dataclass(frozen=True)
class RatingWeights:
    """How much each resource counts in the stars; normalised, so only ratios matter."""

    memory: float = 1.0
    cpu: float = 1.0


@dataclass(frozen=True)
class PlacementRequest:
    vm_name: str
    memory_mb: int
    cpus: int
    disk_gb: int
    highly_available: bool
    host: str | None = None
    storage: StorageLocation | None = None
    networks: tuple[str, ...] = ()
    # Disks passed through to the VM: a LUN the target must see and no other VM may use;
    # a local disk of `passthrough_home`, where alone the VM can run.
    passthrough: tuple[StorageLocation, ...] = ()
    passthrough_home: str | None = None
    max_vcpus_per_core: int = 8
    goal: PlacementGoal = PlacementGoal.LOAD_BALANCING
    weights: RatingWeights = RatingWeights()


@dataclass(frozen=True)
class PlacementDecision:
    host: str | None
    storage: StorageLocation | None
    rating: float
    # (host name, why it cannot take the VM) for every host that was refused.
    rejections: tuple[tuple[str, str], ...]

    @property
    def placed(self) -> bool:
        return self.host is not None

    def explain(self, request: PlacementRequest) -> str:
        """One sentence: why no host can take the VM."""
        what = describe_vm(request)
        if not self.rejections:
            return f"no host can take {what}: there are no hosts"
        reasons = "; ".join(f"{host} {why}" for host, why in self.rejections)
        return f"no host can take {what}: {reasons}"


def describe_vm(request: PlacementRequest) -> str:
    """`VM web1 (2048 MB, 1 vCPU, 20 GB)`."""
    return (
        f"VM {request.vm_name} ({request.memory_mb} MB, {request.cpus} vCPU"
        f"{'s' if request.cpus != 1 else ''}, {request.disk_gb} GB)"
    )


def load_after(host: HostCapacity, request: PlacementRequest) -> tuple[float, float]:
    """The fractions of the host's memory and vCPU capacity left once the VM runs there."""
    memory_left = (host.memory_free_mb - request.memory_mb) / max(1, host.usable_memory_mb)
    capacity = max(1, host.cores * request.max_vcpus_per_core)
    cpu_left = 1.0 - (host.running_vcpus + request.cpus) / capacity
    return max(0.0, min(1.0, memory_left)), max(0.0, min(1.0, cpu_left))


def host_score(host: HostCapacity, request: PlacementRequest) -> float:
    """The rating before rounding to stars, 0 to 1; ties of stars are broken by it.

    Memory and CPU (vCPUs of running VMs per core against `max_vcpus_per_core`) are
    weighed by `request.weights`. Load balancing scores the room left after placement;
    resource maximization the room used, so VMs fill one host before the next.
    """
    memory_left, cpu_left = load_after(host, request)
    if request.goal is PlacementGoal.RESOURCE_MAXIMIZATION:
        memory_left, cpu_left = 1.0 - memory_left, 1.0 - cpu_left
    total = request.weights.memory + request.weights.cpu
    if total <= 0:
        return 1.0
    return (request.weights.memory * memory_left + request.weights.cpu * cpu_left) / total


def stars(score: float) -> float:
    """A host's score as 0.5 to 5 stars in half steps: a host the VM fits on never shows
    zero stars, since zero means "cannot take it"."""
    return max(0.5, min(MAX_STARS, round(MAX_STARS * score * 2) / 2))


def rate_host(host: HostCapacity, request: PlacementRequest) -> float:
    """0 to 5 stars in half-star steps (see `host_score`); 0 when the VM does not fit."""
    if request.memory_mb > host.memory_free_mb or host.usable_memory_mb <= 0:
        return 0.0
    return stars(host_score(host, request))


def check_request(snapshot: PlacementSnapshot, request: PlacementRequest) -> None:
    """Refuse requests that contradict the topology, whatever the hosts' room."""
    if request.host is not None:
        host = snapshot.host(request.host)
        if host is None:
            raise NotFoundError(f"host {request.host} does not exist")
        if host.cluster is not None and not request.highly_available:
            raise InvalidArgumentError(
                f"host {host.name} is a node of cluster {host.cluster}: a VM there must be "
                "highly available (use --ha, or --make-ha to make it so when asked), "
                "or choose a standalone host"
            )
        if host.cluster is None and request.highly_available:
            raise InvalidArgumentError(
                f"host {host.name} is a standalone host: a highly available VM must go on a "
                "cluster node (drop --ha, or choose a node of a cluster)"
            )
    if request.storage is not None:
        kind = request.storage.kind
        if not any(
            s.name == request.storage.name and s.kind is kind for h in snapshot.hosts for s in h.storage
        ):
            label = {StorageKind.CSV: "CSV volume", StorageKind.LUN: "LUN"}.get(kind, "local disk")
            raise NotFoundError(f"storage: no {label} named {request.storage.name}")
        if request.highly_available and kind is StorageKind.LOCAL_DISK:
            raise InvalidArgumentError(
                f"storage: a highly available VM needs its files on cluster storage (a CSV "
                f"volume or a LUN), not on local disk {request.storage.name}"
            )
        if not request.highly_available and kind is StorageKind.CSV:
            raise InvalidArgumentError(
                f"storage: {request.storage.name} is a cluster shared volume; a VM that is not "
                "highly available keeps its files on a local disk of a standalone host, or on a "
                "LUN the SAN zones to it"
            )


def refusals(host: HostCapacity, request: PlacementRequest, *, every: bool = True) -> list[Refusal]:
    """Why the host cannot take the VM: every reason, or (every=False) the first only.

    Purely computational. The storage the VM would use is checked by `pick_storage`.
    """
    found: list[Refusal] = []

    def refuse(code: RatingReason, detail: str) -> bool:
        found.append(Refusal(code, detail))
        return not every

    if host.library_server:
        # Nothing else about it matters: no VM is placed on it, however much room it has.
        refuse(
            RatingReason.LIBRARY_SERVER,
            "is a library server: it stores VMs and runs none (`havm vm store` puts a VM there)",
        )
        return found
    if host.state is HostState.MAINTENANCE:
        if refuse(RatingReason.MAINTENANCE, "is in maintenance mode"):
            return found
    elif host.state is not HostState.OK:
        if refuse(RatingReason.HOST_STATE, f"is {host.state.value}"):
            return found
    if request.highly_available and host.cluster is None:
        if refuse(
            RatingReason.NOT_CLUSTER_NODE, "is a standalone host (a highly available VM needs a cluster node)"
        ):
            return found
    if not request.highly_available and host.cluster is not None:
        if refuse(
            RatingReason.CLUSTER_NODE, f"is a node of cluster {host.cluster} (the VM is not highly available)"
        ):
            return found
    for network in request.networks:
        if network not in host.networks:
            if refuse(RatingReason.NETWORK_MISSING, f"has no network '{network}'"):
                return found
    for disk in request.passthrough:
        why = _passthrough_refusal(host, request, disk)
        if why and refuse(RatingReason.STORAGE, why):
            return found
    if request.cpus > host.cores:
        if refuse(RatingReason.CPU_CORES, f"has {host.cores} cores, VM needs {request.cpus} vCPUs"):
            return found
    if request.memory_mb > host.memory_free_mb:
        refuse(RatingReason.MEMORY, f"has {host.memory_free_mb} MB free, needs {request.memory_mb} MB")
    return found


def _passthrough_refusal(host: HostCapacity, request: PlacementRequest, disk: StorageLocation) -> str:
    """Why the host cannot give the VM this pass-through disk; empty when it can."""
    if disk.kind is StorageKind.LOCAL_DISK:
        if host.name != request.passthrough_home:
            return f"cannot pass through local disk {disk.name} of host {request.passthrough_home}"
        return ""
    room = next((s for s in host.storage if s.name == disk.name and s.kind is disk.kind), None)
    if room is None:
        return f"does not see pass-through LUN {disk.name}"
    others = [vm for vm in room.used_by if vm != request.vm_name]
    if others:
        return f"pass-through LUN {disk.name} is used by VM {', '.join(others)}"
    return ""


def pick_storage(host: HostCapacity, request: PlacementRequest) -> tuple[StorageLocation | None, str]:
    """The storage for the VM's files on this host, or None and why."""
    if request.storage is not None:
        wanted = request.storage
        room = next((s for s in host.storage if s.name == wanted.name and s.kind is wanted.kind), None)
        if room is None:
            return None, f"does not see {wanted.kind.value} {wanted.name}"
        if room.kind is StorageKind.LUN and room.used_by:
            return None, f"sees LUN {room.name} but VM {room.used_by[0]} uses it"
        if room.free_gb < request.disk_gb:
            return None, f"has {room.free_gb} GB free on {room.name}, needs {request.disk_gb} GB"
        return wanted, ""
    kind = StorageKind.CSV if request.highly_available else StorageKind.LOCAL_DISK
    rooms = [s for s in host.storage if s.kind is kind]
    if not rooms:
        label = "CSV volume" if kind is StorageKind.CSV else "local disk"
        return None, f"sees no {label}"
    best = max(rooms, key=lambda s: (s.free_gb, s.name))
    if best.free_gb < request.disk_gb:
        return None, f"has {best.free_gb} GB free on {best.name}, needs {request.disk_gb} GB"
    return StorageLocation(kind, best.name), ""


def place(snapshot: PlacementSnapshot, request: PlacementRequest) -> PlacementDecision:
    """Choose the best-rated host and its storage, or say why each host is refused.

    Raises NotFoundError / InvalidArgumentError for requests that contradict the
    topology (see `check_request`); otherwise never raises.
    """
    check_request(snapshot, request)
    candidates = (
        [h for h in snapshot.hosts if h.name == request.host]
        if request.host is not None
        else sorted(snapshot.hosts, key=lambda h: h.name)
    )
    rejections: list[tuple[str, str]] = []
    best: tuple[tuple[float, float], str, StorageLocation] | None = None
    for host in candidates:
        refused = refusals(host, request, every=False)
        why = refused[0].detail if refused else None
        storage: StorageLocation | None = None
        if why is None:
            storage, why = pick_storage(host, request)
        if storage is None:
            rejections.append((host.name, why or "cannot take the VM"))
            continue
        score = host_score(host, request)
        rating = (stars(score) if host.usable_memory_mb > 0 else 0.0, score)
        # Most stars win, then the finer score (so equal stars still spread the load);
        # among equals the first name, so decisions are stable.
        if best is None or rating > best[0]:
            best = (rating, host.name, storage)
    if best is None:
        return PlacementDecision(None, None, 0.0, tuple(rejections))
    return PlacementDecision(best[1], best[2], best[0][0], tuple(rejections))
