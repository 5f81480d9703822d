"""The cluster topology: what hosts, clusters and shared storage exist, and the timing
every process of the cluster runs with.

The topology is the operator's description of the emulated datacenter. The manager
loads it at start, `havm up` starts one agent per host from it and writes each agent's
host configuration from it, and the CLI reads it to add and remove hosts; so its
schema lives here, beside the wire contract, once, as pure functions over what
`yaml.safe_load` returned (one host entry's rules in `hosts`, the timing section's in
`timing`, the YAML reading in `topology_file`). Each error names the field path and
what is wrong with it. Pure: no I/O, no yaml, no generated stubs.

Format (YAML)::

    version: 1                      # required, must be 1
    vmm_version: "2008r2"           # optional: the VMM level that manages the cluster,
                                    # "2008" or "2008r2" (default); VMM 2008 has no CSVs,
                                    # quick migration only, case-sensitive network names
    host_defaults:                  # optional; merged (shallow, per key) into every host
      profile: hyperv-2008r2        # hyperv-2008 | hyperv-2008r2 | esx | library
      cpu: {vendor: GenuineIntel, model: Intel Xeon X5570,
            features: [sse3, sse4_2], cores: 8, mhz: 2933}
      memory_mb: 32768
      host_reserve_mb: 2048         # memory kept for the parent partition; default 1024
      disks: [{name: C, capacity_gb: 500}]
      networks: [{name: External, bound_to: "Broadcom BCM5709C #1", vlan_id: 0}]
    clusters:                       # optional
      - name: cluster1
        profile: hyperv-2008r2      # every node must have this profile
        reserve: 1                  # node failures to absorb; default 1; < number of nodes
        datacenter: dc1             # ESX clusters only: the vCenter datacenter it belongs to;
                                    # running VMs move by VMotion between its clusters, which
                                    # may share datastores (a CSV of the same name and size)
        nodes: [node1, node2, node3, node4]
        csvs: [{name: Volume1, capacity_gb: 2048}]   # visible to every node
        luns: [{name: lun1, capacity_gb: 200, visible_to: [node1, node2]}]
                                    # visible_to defaults to every node; it may also name
                                    # standalone hosts the SAN zones the LUN to, so that a
                                    # VM crosses the cluster boundary by SAN transfer
    timing:                         # optional; the manager and every agent run with it
      heartbeat_interval_s: 1       # agents beat this often
      heartbeat_threshold: 5        # missed beats in a row: the manager calls a host suspect
      probe_timeout_s: 0.5          # the manager's probe of a suspect host; < heartbeat_interval_s
      isolation_timeout_s: 15       # an agent cut off from manager and broker this long applies
                                    # its isolation response; must be longer than
                                    # heartbeat_interval_s x heartbeat_threshold + probe_timeout_s
      stall_timeout_s: 5            # a migration stream silent this long is given up
      refresh_interval_s: 5         # the manager refreshes every host this often; >= probe_timeout_s
    migration:                      # optional; how VMs move between hosts
      max_live_migrations_per_host: 2   # simultaneous live migrations a host takes part in
      max_passes: 10                # pre-copy passes at most (Hyper-V 2008 R2's limit)
      blackout_budget_ms: 30        # pause once the rest fits this long at the measured rate
      bandwidth_mb_per_s: 0         # cap of the migration network; 0 is no cap
      no_converge: quick            # quick | fail: a live migration that cannot converge
    isolation:                      # optional; what an agent cut off from everything does
      response: power_off           # power_off | shut_down | leave_running
    placement:                      # optional; how hosts are rated (the manager's flags win)
      goal: load_balancing          # load_balancing | resource_maximization
      memory_weight: 1              # how much free memory counts in the stars
      cpu_weight: 1                 # how much CPU load counts
    hosts:                          # required, at least one
      - name: node1
        address: 127.0.0.1:50051    # optional: the agent's gRPC address
        migration_address: 10.0.0.1:50051   # optional: where other agents stream
                                    # migrations to it; defaults to address
      - name: standalone1           # a host in no cluster's nodes is standalone
        memory_mb: 16384
      - name: library1              # a VMM library server: stores VMs at rest (`havm vm
        profile: library            # store`/`deploy`) on its disks, its library shares;
        disks: [{name: MSSCVMMLibrary, capacity_gb: 1000}]   # runs none, in no cluster

Names (hosts, clusters, volumes, disks, networks) match ``[A-Za-z0-9][A-Za-z0-9_.-]*``,
except network names and `bound_to`, which are free text as on a real host (Hyper-V
virtual network names contain spaces). Unknown keys are errors, so a typo such as
``memroy_mb`` is reported instead of silently ignored. Every duration ends in `_s`
(seconds) or `_ms` (milliseconds).

`migration.stall_timeout_s` and `isolation.timeout_s` are the older spellings of
`timing.stall_timeout_s` and `timing.isolation_timeout_s` and still read; a topology
that sets both spellings of one value is an error naming the `timing:` key. The timing
rules are checked together once the section is read: a topology that breaks several
gets one sentence per broken rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from havm.contract.fields import (
    NAME_PATTERN,
    TopologyError,
    read_choice,
    read_int,
    read_list,
    read_mapping,
    read_name,
    read_number,
    read_required,
    show_value,
)
from havm.contract.hosts import (
    DEFAULTABLE_HOST_KEYS,
    MAX_CAPACITY_GB,
    MAX_CORES,
    PROFILES,
    CpuSpec,
    DiskSpec,
    HostSpec,
    NetworkSpec,
    host_defaults_of,
    host_to_dict,
    parse_host,
    parse_host_entry,
)
from havm.contract.levels import (
    DEFAULT_VMM_VERSION,
    PROFILE_CLUSTERS,
    PROFILE_DATACENTER,
    VMM_VERSION_CSV,
    check_csvs,
)
from havm.contract.timing import MAX_TIMING_S, Timing, check_timing, parse_timing, timing_to_dict

__all__ = [
    "ClusterSpec",
    "CpuSpec",
    "DiskSpec",
    "HostSpec",
    "MigrationSettings",
    "NAME_PATTERN",
    "NetworkSpec",
    "PROFILES",
    "Timing",
    "Topology",
    "TopologyError",
    "VolumeSpec",
    "host_defaults_of",
    "host_to_dict",
    "parse_host_entry",
    "parse_topology",
    "seen_by_every_node",
    "topology_to_dict",
    "without_host",
]

DEFAULT_CLUSTER_RESERVE = 1

_TOP_KEYS = (
    "version",
    "vmm_version",
    "host_defaults",
    "clusters",
    "hosts",
    "timing",
    "migration",
    "placement",
    "isolation",
)
ISOLATION_RESPONSES = ("power_off", "shut_down", "leave_running")
_ISOLATION_KEYS = ("timeout_s", "response")
PLACEMENT_GOALS = ("load_balancing", "resource_maximization")
_PLACEMENT_KEYS = ("goal", "memory_weight", "cpu_weight")
MAX_RATING_WEIGHT = 100.0
NO_CONVERGE_POLICIES = ("quick", "fail")
MAX_LIVE_MIGRATIONS = 64
MAX_PASSES = 1000
MAX_BLACKOUT_BUDGET_MS = 60_000
MAX_BANDWIDTH_MB_PER_S = 1_000_000.0
_MIGRATION_KEYS = (
    "max_live_migrations_per_host",
    "max_passes",
    "blackout_budget_ms",
    "bandwidth_mb_per_s",
    "no_converge",
    "stall_timeout_s",
)
_CLUSTER_KEYS = ("name", "profile", "reserve", "datacenter", "nodes", "csvs", "luns")
_CSV_KEYS = ("name", "capacity_gb")
_LUN_KEYS = ("name", "capacity_gb", "visible_to")


@dataclass(frozen=True)
class VolumeSpec:
    name: str
    kind: str  # "csv" | "lun"
    capacity_gb: int
    visible_to: tuple[str, ...]  # host names


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    profile: str
    reserve: int
    nodes: tuple[str, ...]
    volumes: tuple[VolumeSpec, ...]
    # The vCenter datacenter of an ESX cluster; None for a cluster in none.
    datacenter: str | None = None


@dataclass(frozen=True)
class MigrationSettings:
    """How VMs move between hosts; the topology's `migration:` section."""

    # Live migrations a host takes part in at once (as source or destination); more queue.
    max_live_migrations_per_host: int = 2
    # Pre-copy passes at most (Hyper-V 2008 R2: 10).
    max_passes: int = 10
    # The guest is paused once what is left to send fits this many milliseconds.
    blackout_budget_ms: int = 30
    # Cap of the transfer rate in MB/s, as a slower migration network; 0 is no cap.
    bandwidth_mb_per_s: float = 0.0
    # A live migration that cannot converge: "quick" falls back to a quick migration,
    # "fail" gives up and leaves the VM running on its source.
    no_converge: str = "quick"
    # A migration stream silent this many seconds (its source lost power) is given up:
    # the topology's timing.stall_timeout_s, kept here for the migration service.
    stall_timeout_s: float = Timing.stall_timeout_s


@dataclass(frozen=True)
class PlacementSettings:
    """How hosts are rated; the topology's `placement:` section (the manager's flags win)."""

    goal: str = "load_balancing"  # or "resource_maximization"
    memory_weight: float = 1.0
    cpu_weight: float = 1.0


@dataclass(frozen=True)
class IsolationSettings:
    """What every agent does when cut off from manager and broker; the `isolation:` section."""

    # Seconds from the last successful contact until the isolation response: the
    # topology's timing.isolation_timeout_s, kept here beside the response.
    timeout_s: float = Timing.isolation_timeout_s
    response: str = "power_off"  # or "shut_down", "leave_running"


@dataclass(frozen=True)
class Topology:
    clusters: tuple[ClusterSpec, ...]
    hosts: tuple[HostSpec, ...]
    migration: MigrationSettings = MigrationSettings()
    placement: PlacementSettings = PlacementSettings()
    isolation: IsolationSettings = IsolationSettings()
    timing: Timing = Timing()
    vmm_version: str = DEFAULT_VMM_VERSION  # "2008" | "2008r2"

    def agent_settings(self) -> dict[str, Any]:
        """The timings every agent of this topology runs with (its config's `settings`)."""
        return {
            "heartbeat_interval_s": self.timing.heartbeat_interval_s,
            # One stall timeout for the whole migration path: the manager's progress
            # stream and the agents' own stream give up on a silent peer alike.
            "migration_stall_timeout_s": self.timing.stall_timeout_s,
            "isolation_timeout_s": self.timing.isolation_timeout_s,
            "isolation_response": self.isolation.response,
        }

    def host(self, name: str) -> HostSpec:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def cluster(self, name: str) -> ClusterSpec:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(name)

    def datacenter_peers(self, cluster: str | None) -> tuple[str, ...]:
        """The other clusters of `cluster`'s datacenter; none for a cluster in none."""
        own = next((c for c in self.clusters if c.name == cluster), None)
        if own is None or own.datacenter is None:
            return ()
        return tuple(c.name for c in self.clusters if c.datacenter == own.datacenter and c.name != own.name)

    def volumes_visible_to(self, host_name: str) -> tuple[VolumeSpec, ...]:
        return tuple(
            volume
            for cluster in self.clusters
            for volume in cluster.volumes
            if host_name in volume.visible_to
        )

    def with_addresses(self, addresses: dict[str, str]) -> Topology:
        hosts = tuple(replace(h, address=addresses[h.name]) if h.name in addresses else h for h in self.hosts)
        return replace(self, hosts=hosts)

    def with_migration_addresses(self, addresses: dict[str, str]) -> Topology:
        """Hosts that set no migration address of their own get the one given here."""
        hosts = tuple(
            replace(h, migration_address=addresses[h.name])
            if h.name in addresses and h.migration_address is None
            else h
            for h in self.hosts
        )
        return replace(self, hosts=hosts)


# --- the parser ----------------------------------------------------------------------


def parse_topology(data: object) -> Topology:
    """Validate what `yaml.safe_load` returned and build a Topology. Pure."""
    if not isinstance(data, dict):
        raise TopologyError("topology", f"must be a mapping at the top level, got {show_value(data)}")
    top = read_mapping(data, "", _TOP_KEYS)
    if "version" not in top:
        raise TopologyError("version", "is required (use version: 1)")
    if top["version"] != 1 or isinstance(top["version"], bool):
        raise TopologyError("version", f"must be 1, got {show_value(top['version'])}")

    defaults: dict[str, Any] = {}
    if top.get("host_defaults") is not None:
        defaults = read_mapping(top["host_defaults"], "host_defaults", DEFAULTABLE_HOST_KEYS)

    if top.get("hosts") is None:
        raise TopologyError("hosts", "is required: list at least one host")
    raw_hosts = read_list(top["hosts"], "hosts")
    if not raw_hosts:
        raise TopologyError("hosts", "must list at least one host")

    hosts: list[HostSpec] = []
    seen_hosts: set[str] = set()
    for i, raw in enumerate(raw_hosts):
        host = parse_host(raw, f"hosts[{i}]", defaults)
        if host.name in seen_hosts:
            raise TopologyError(f"hosts[{i}].name", f"duplicate host name '{host.name}'")
        seen_hosts.add(host.name)
        hosts.append(host)

    clusters: list[ClusterSpec] = []
    owner: dict[str, str] = {}
    raw_clusters = top.get("clusters")
    if raw_clusters is not None:
        for i, raw in enumerate(read_list(raw_clusters, "clusters")):
            cluster = _parse_cluster(raw, f"clusters[{i}]", {h.name: h for h in hosts})
            if any(c.name == cluster.name for c in clusters):
                raise TopologyError(f"clusters[{i}].name", f"duplicate cluster name '{cluster.name}'")
            if cluster.name in seen_hosts:
                raise TopologyError(
                    f"clusters[{i}].name",
                    f"'{cluster.name}' is already a host name; cluster and host names must differ",
                )
            for j, node in enumerate(cluster.nodes):
                if node in owner:
                    raise TopologyError(
                        f"clusters[{i}].nodes[{j}]",
                        f"host '{node}' is already a node of cluster '{owner[node]}'",
                    )
                owner[node] = cluster.name
            clusters.append(cluster)

    _check_zoned_hosts(clusters, owner)
    _check_shared_datastores(clusters)
    hosts = [replace(h, cluster=owner.get(h.name)) for h in hosts]
    timing = Timing() if top.get("timing") is None else parse_timing(top["timing"], "timing")
    migration = MigrationSettings()
    if top.get("migration") is not None:
        migration = _parse_migration(top["migration"], "migration")
        timing = _older_spelling(top, timing, "migration", "stall_timeout_s", "stall_timeout_s")
    placement = PlacementSettings()
    if top.get("placement") is not None:
        placement = _parse_placement(top["placement"], "placement")
    isolation = IsolationSettings()
    if top.get("isolation") is not None:
        isolation = _parse_isolation(top["isolation"], "isolation")
        timing = _older_spelling(top, timing, "isolation", "timeout_s", "isolation_timeout_s")
    check_timing(timing)
    vmm_version = DEFAULT_VMM_VERSION
    if top.get("vmm_version") is not None:
        # YAML reads an unquoted 2008 as a number: accept it as the level it names.
        raw = top["vmm_version"]
        raw = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
        vmm_version = read_choice(raw, "vmm_version", tuple(VMM_VERSION_CSV))
    check_csvs(clusters, vmm_version)
    return Topology(
        clusters=tuple(clusters),
        hosts=tuple(hosts),
        migration=replace(migration, stall_timeout_s=timing.stall_timeout_s),
        placement=placement,
        isolation=replace(isolation, timeout_s=timing.isolation_timeout_s),
        timing=timing,
        vmm_version=vmm_version,
    )


def _check_zoned_hosts(clusters: Sequence[ClusterSpec], owner: Mapping[str, str]) -> None:
    """A cluster's LUN is seen by its own nodes and by standalone hosts, never by another
    cluster's nodes (whose cluster would not know it)."""
    for i, cluster in enumerate(clusters):
        luns = [v for v in cluster.volumes if v.kind == "lun"]
        for k, lun in enumerate(luns):
            for m, host_name in enumerate(lun.visible_to):
                other = owner.get(host_name)
                if other is not None and other != cluster.name:
                    raise TopologyError(
                        f"clusters[{i}].luns[{k}].visible_to[{m}]",
                        f"host '{host_name}' is a node of cluster '{other}'; a LUN is seen by the nodes "
                        "of its own cluster and by standalone hosts",
                    )


def _check_shared_datastores(clusters: Sequence[ClusterSpec]) -> None:
    """Volumes of one name in two clusters are one directory of the SAN: only ESX clusters
    of one datacenter share a datastore, and then as the same CSV of the same size."""
    seen: dict[str, tuple[int, ClusterSpec, VolumeSpec]] = {}
    for i, cluster in enumerate(clusters):
        for volume in cluster.volumes:
            if volume.name not in seen:
                seen[volume.name] = (i, cluster, volume)
                continue
            _, first, other = seen[volume.name]
            at = f"clusters[{i}].{volume.kind}s"
            shared = cluster.datacenter is not None and cluster.datacenter == first.datacenter
            if not shared:
                raise TopologyError(
                    at,
                    f"volume '{volume.name}' is also a volume of cluster '{first.name}'; only ESX clusters "
                    "of one datacenter share a datastore (name it otherwise)",
                )
            if volume.kind != "csv" or other.kind != "csv" or volume.capacity_gb != other.capacity_gb:
                raise TopologyError(
                    at,
                    f"datastore '{volume.name}' is shared with cluster '{first.name}': it must be a CSV "
                    f"there too, of the same capacity ({other.capacity_gb} GB there)",
                )


def _older_spelling(top: dict[str, Any], timing: Timing, section: str, old: str, new: str) -> Timing:
    """`section.old` is the older spelling of `timing.new`: it still sets the value, unless
    the `timing:` section sets it too."""
    if old not in top[section]:
        return timing
    if isinstance(top.get("timing"), dict) and new in top["timing"]:
        raise TopologyError(
            f"{section}.{old}",
            f"timing.{new} sets this value too; keep timing.{new} and remove {section}.{old}",
        )
    value = read_number(top[section][old], f"{section}.{old}", 0.0, MAX_TIMING_S, exclusive_minimum=True)
    if new == "isolation_timeout_s":
        return replace(timing, isolation_timeout_s=value)
    return replace(timing, stall_timeout_s=value)


def _parse_isolation(raw: object, field: str) -> IsolationSettings:
    entry = read_mapping(raw, field, _ISOLATION_KEYS)
    default = IsolationSettings()
    return IsolationSettings(
        response=read_choice(
            entry.get("response", default.response), f"{field}.response", ISOLATION_RESPONSES
        ),
    )


def _parse_placement(raw: object, field: str) -> PlacementSettings:
    entry = read_mapping(raw, field, _PLACEMENT_KEYS)
    default = PlacementSettings()
    weights = {
        key: read_number(entry.get(key, getattr(default, key)), f"{field}.{key}", 0.0, MAX_RATING_WEIGHT)
        for key in ("memory_weight", "cpu_weight")
    }
    if sum(weights.values()) <= 0:
        raise TopologyError(field, "memory_weight and cpu_weight cannot both be 0")
    return PlacementSettings(
        goal=read_choice(entry.get("goal", default.goal), f"{field}.goal", PLACEMENT_GOALS), **weights
    )


def _parse_migration(raw: object, field: str) -> MigrationSettings:
    entry = read_mapping(raw, field, _MIGRATION_KEYS)
    default = MigrationSettings()
    return MigrationSettings(
        max_live_migrations_per_host=read_int(
            entry.get("max_live_migrations_per_host", default.max_live_migrations_per_host),
            f"{field}.max_live_migrations_per_host",
            1,
            MAX_LIVE_MIGRATIONS,
        ),
        max_passes=read_int(
            entry.get("max_passes", default.max_passes), f"{field}.max_passes", 1, MAX_PASSES
        ),
        blackout_budget_ms=read_int(
            entry.get("blackout_budget_ms", default.blackout_budget_ms),
            f"{field}.blackout_budget_ms",
            1,
            MAX_BLACKOUT_BUDGET_MS,
        ),
        bandwidth_mb_per_s=read_number(
            entry.get("bandwidth_mb_per_s", default.bandwidth_mb_per_s),
            f"{field}.bandwidth_mb_per_s",
            0.0,
            MAX_BANDWIDTH_MB_PER_S,
        ),
        no_converge=read_choice(
            entry.get("no_converge", default.no_converge), f"{field}.no_converge", NO_CONVERGE_POLICIES
        ),
    )


def _parse_cluster(raw: object, field: str, hosts: dict[str, HostSpec]) -> ClusterSpec:
    entry = read_mapping(raw, field, _CLUSTER_KEYS)
    name = read_name(read_required(entry, "name", field), f"{field}.name")
    profile = read_choice(read_required(entry, "profile", field), f"{field}.profile", PROFILES)
    if not PROFILE_CLUSTERS[profile]:
        raise TopologyError(
            f"{field}.profile",
            f"{profile} hosts form no cluster: a library server stores VMs and runs none",
        )
    raw_nodes = read_list(read_required(entry, "nodes", field), f"{field}.nodes")
    if not raw_nodes:
        raise TopologyError(f"{field}.nodes", "must list at least one node")
    nodes: list[str] = []
    for j, raw_node in enumerate(raw_nodes):
        at = f"{field}.nodes[{j}]"
        node = read_name(raw_node, at)
        if node not in hosts:
            raise TopologyError(at, f"host '{node}' is not defined under hosts")
        if node in nodes:
            raise TopologyError(at, f"host '{node}' is listed twice")
        if hosts[node].profile != profile:
            raise TopologyError(
                at,
                f"host '{node}' has profile {hosts[node].profile} but the cluster's profile is {profile}",
            )
        nodes.append(node)
    reserve = read_int(entry.get("reserve", DEFAULT_CLUSTER_RESERVE), f"{field}.reserve", 0, MAX_CORES)
    if reserve >= len(nodes):
        raise TopologyError(
            f"{field}.reserve",
            f"must be less than the number of nodes ({len(nodes)}), got {reserve}",
        )

    volumes: list[VolumeSpec] = []

    def add(volume: VolumeSpec, at: str) -> None:
        if any(v.name == volume.name for v in volumes):
            raise TopologyError(f"{at}.name", f"duplicate volume name '{volume.name}'")
        volumes.append(volume)

    for k, item in enumerate(read_list(entry.get("csvs") or [], f"{field}.csvs")):
        at = f"{field}.csvs[{k}]"
        csv = read_mapping(item, at, _CSV_KEYS)
        add(
            VolumeSpec(
                name=read_name(read_required(csv, "name", at), f"{at}.name"),
                kind="csv",
                capacity_gb=read_int(
                    read_required(csv, "capacity_gb", at), f"{at}.capacity_gb", 1, MAX_CAPACITY_GB
                ),
                visible_to=tuple(nodes),
            ),
            at,
        )
    for k, item in enumerate(read_list(entry.get("luns") or [], f"{field}.luns")):
        at = f"{field}.luns[{k}]"
        lun = read_mapping(item, at, _LUN_KEYS)
        lun_name = read_name(read_required(lun, "name", at), f"{at}.name")
        capacity = read_int(read_required(lun, "capacity_gb", at), f"{at}.capacity_gb", 1, MAX_CAPACITY_GB)
        visible: list[str] = []
        if lun.get("visible_to") is None:
            visible = list(nodes)
        else:
            for m, raw_host in enumerate(read_list(lun["visible_to"], f"{at}.visible_to")):
                vis_at = f"{at}.visible_to[{m}]"
                host_name = read_name(raw_host, vis_at)
                if host_name not in hosts:
                    raise TopologyError(vis_at, f"host '{host_name}' is not defined under hosts")
                if host_name not in visible:
                    visible.append(host_name)
        add(VolumeSpec(lun_name, "lun", capacity, tuple(visible)), at)
    datacenter = None
    if entry.get("datacenter") is not None:
        datacenter = read_name(entry["datacenter"], f"{field}.datacenter")
        if not PROFILE_DATACENTER[profile]:
            raise TopologyError(
                f"{field}.datacenter",
                f"a {profile} cluster belongs to no datacenter: only ESX clusters do (vCenter's), "
                "between which running VMs move by VMotion",
            )
    return ClusterSpec(
        name=name,
        profile=profile,
        reserve=reserve,
        nodes=tuple(nodes),
        volumes=tuple(volumes),
        datacenter=datacenter,
    )


def topology_to_dict(topology: Topology) -> dict[str, Any]:
    """The explicit form of a topology (no host_defaults); parse_topology reads it back."""
    clusters = []
    for c in topology.clusters:
        clusters.append(
            {
                "name": c.name,
                "profile": c.profile,
                "reserve": c.reserve,
                **({"datacenter": c.datacenter} if c.datacenter is not None else {}),
                "nodes": list(c.nodes),
                "csvs": [
                    {"name": v.name, "capacity_gb": v.capacity_gb} for v in c.volumes if v.kind == "csv"
                ],
                "luns": [
                    {"name": v.name, "capacity_gb": v.capacity_gb, "visible_to": list(v.visible_to)}
                    for v in c.volumes
                    if v.kind == "lun"
                ],
            }
        )
    hosts = [host_to_dict(h) for h in topology.hosts]
    m = topology.migration
    migration = {
        "max_live_migrations_per_host": m.max_live_migrations_per_host,
        "max_passes": m.max_passes,
        "blackout_budget_ms": m.blackout_budget_ms,
        "bandwidth_mb_per_s": m.bandwidth_mb_per_s,
        "no_converge": m.no_converge,
    }
    p = topology.placement
    placement = {"goal": p.goal, "memory_weight": p.memory_weight, "cpu_weight": p.cpu_weight}
    isolation = {"response": topology.isolation.response}
    return {
        "version": 1,
        "vmm_version": topology.vmm_version,
        "timing": timing_to_dict(topology.timing),
        "clusters": clusters,
        "migration": migration,
        "placement": placement,
        "isolation": isolation,
        "hosts": hosts,
    }


def seen_by_every_node(
    nodes: Sequence[str], visibility: Mapping[str, Sequence[str]], csvs: Iterable[str] = ()
) -> list[str]:
    """The volumes a node joining `nodes` sees: every CSV, and each volume every one of
    `nodes` sees (`visibility`: volume -> the nodes that see it), in `visibility`'s order."""
    members = set(nodes)
    shared = set(csvs)
    return [name for name, seen in visibility.items() if name in shared or members <= set(seen)]


def without_host(topology: Topology, name: str) -> Topology:
    """The topology once host `name` is gone: out of `hosts`, of its cluster's nodes and
    of every volume's visibility. A cluster's reserve stays below its node count, as
    parse_topology requires. Pure; raises TopologyError when the host is not there or
    would leave a topology with no host or a cluster with no node."""
    if not any(h.name == name for h in topology.hosts):
        raise TopologyError("hosts", f"no host named '{name}'")
    hosts = tuple(h for h in topology.hosts if h.name != name)
    if not hosts:
        raise TopologyError("hosts", f"'{name}' is the last host; a topology lists at least one")
    clusters = []
    for c in topology.clusters:
        if name not in c.nodes:
            # A standalone host a LUN was zoned to stops seeing it.
            volumes = tuple(
                replace(v, visible_to=tuple(n for n in v.visible_to if n != name)) for v in c.volumes
            )
            clusters.append(replace(c, volumes=volumes))
            continue
        nodes = tuple(n for n in c.nodes if n != name)
        if not nodes:
            raise TopologyError(
                f"clusters.{c.name}.nodes", f"'{name}' is the last node; a cluster keeps at least one"
            )
        volumes = tuple(replace(v, visible_to=tuple(n for n in v.visible_to if n != name)) for v in c.volumes)
        clusters.append(replace(c, nodes=nodes, reserve=min(c.reserve, len(nodes) - 1), volumes=volumes))
    return replace(topology, hosts=hosts, clusters=tuple(clusters))
