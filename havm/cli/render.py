"""Turns the manager's messages into the CLI's output: plain dicts, JSON and tables.

The dicts are the stable, snake_case JSON contract scripts rely on; the tables are
built from the very same dicts so that both views always agree. Enums become lowercase
words without their prefix (HOST_STATE_NOT_RESPONDING -> "not_responding").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from havm.cli.render_config import (
    cluster_network_dict,
    cluster_networks_text,
    reason_dict,
    reasons_text,
    resources_text,
)
from havm.cli.render_words import STORAGE_PREFIXES, Row, enum_word, profile_word, storage_text, timestamp
from havm.v1 import common_pb2, manager_pb2


def cpu_dict(cpu: common_pb2.Cpu) -> Row:
    return {
        "vendor": cpu.vendor,
        "model": cpu.model,
        "features": list(cpu.features),
        "cores": cpu.cores,
        "mhz": cpu.mhz,
    }


def disk_dict(disk: common_pb2.LocalDisk) -> Row:
    return {"name": disk.name, "capacity_bytes": disk.capacity_bytes, "free_bytes": disk.free_bytes}


def network_dict(network: common_pb2.Network) -> Row:
    return {
        "name": network.name,
        "kind": enum_word(common_pb2.NetworkKind, network.kind, "NETWORK_KIND_"),
        "bound_to": network.bound_to,
        "vlan_id": network.vlan_id,
    }


def volume_dict(volume: common_pb2.SharedVolume) -> Row:
    return {
        "name": volume.name,
        "kind": enum_word(common_pb2.StorageKind, volume.kind, "STORAGE_KIND_"),
        "capacity_bytes": volume.capacity_bytes,
        "free_bytes": volume.free_bytes,
    }


def host_dict(host: manager_pb2.Host) -> Row:
    return {
        "name": host.name,
        "cluster": host.cluster or None,
        "profile": profile_word(host.profile),
        "state": enum_word(manager_pb2.HostState, host.state, "HOST_STATE_"),
        "address": host.address,
        "memory_mb": host.memory_mb,
        "memory_free_mb": host.memory_free_mb,
        "vm_count": host.vm_count,
        "rating": host.rating,
        "cpu": cpu_dict(host.cpu),
        "disks": [disk_dict(d) for d in host.disks],
        "networks": [network_dict(n) for n in host.networks],
        "volumes": [volume_dict(v) for v in host.volumes],
        "last_refresh": timestamp(host, "last_refresh"),
        "state_reason": host.state_reason,
        "added_at_runtime": host.added_at_runtime,
        "capabilities": capabilities_dict(host.capabilities, host.capabilities_reported),
    }


def capabilities_dict(capabilities: common_pb2.HostCapabilities, reported: bool) -> Row:
    """What the host can do; `reported` false: its profile's row, its agent has not answered yet."""
    return {
        "live_migration": capabilities.live_migration,
        "quick_migration": capabilities.quick_migration,
        "csv": capabilities.csv,
        "network_kind": enum_word(common_pb2.NetworkKind, capabilities.network_kind, "NETWORK_KIND_"),
        "library_server": capabilities.library_server,
        "reported": reported,
    }


def capabilities_text(row: Row) -> str:
    """`live and quick migration, CSV; port groups (reported)`."""
    source = "reported" if row["reported"] else "from its profile"
    if row.get("library_server"):
        return f"library server: stores VMs, runs none ({source})"
    moves = {
        (True, True): "live and quick migration",
        (True, False): "live migration only",
        (False, True): "quick migration only",
        (False, False): "no migration",
    }[(row["live_migration"], row["quick_migration"])]
    csv = ", CSV" if row["csv"] else ""
    networks = "port groups" if row["network_kind"] == "port_group" else "virtual networks"
    return f"{moves}{csv}; {networks} ({source})"


def vm_dict(vm: manager_pb2.Vm) -> Row:
    return {
        "id": vm.id,
        "name": vm.name,
        "host": vm.host or None,
        "state": enum_word(common_pb2.VmState, vm.state, "VM_STATE_"),
        "ha": vm.highly_available,
        "status": enum_word(common_pb2.VmConfigStatus, vm.status, "VM_CONFIG_STATUS_"),
        "status_reasons": [reason_dict(r) for r in vm.status_reasons],
        "ignored_reasons": [reason_dict(r) for r in vm.ignored_reasons],
        "memory_mb": vm.memory_mb,
        "cpus": vm.cpus,
        "disk_gb": vm.disk_gb,
        "storage": storage_text(vm.storage),
        "networks": list(vm.networks),
        "imported": vm.imported,
        "reason": vm.reason,
        "created_at": timestamp(vm, "created_at"),
        "restart_priority": enum_word(common_pb2.RestartPriority, vm.restart_priority, "RESTART_PRIORITY_"),
        "failover_count": vm.failover_count,
        "processor_compatibility": vm.processor_compatibility,
        "migration_id": vm.migration_id or None,
        "failover_policy": policy_dict(vm.failover_policy, vm.effective_max_failovers),
        "recent_failovers": [
            t.ToDatetime(tzinfo=UTC).isoformat().replace("+00:00", "Z") for t in vm.recent_failovers
        ],
        "failed_action": (
            enum_word(manager_pb2.FailedAction, vm.failed_action, "FAILED_ACTION_")
            if vm.failed_action
            else None
        ),
        "last_incident": incident_dict(vm.last_incident) if vm.HasField("last_incident") else None,
        "path": vm.path or None,
        "passthrough_disks": [storage_text(d) for d in vm.passthrough_disks],
        "iso_image": vm.iso_image or None,
        "cluster_resources": [{"name": r.name, "type": r.type} for r in vm.cluster_resources],
        "data_disks": [
            {"file": d.file, "size_bytes": d.size_bytes, "converted_from": storage_text(d.converted_from)}
            for d in vm.data_disks
        ],
    }


def policy_dict(policy: manager_pb2.FailoverPolicy, effective_max: int) -> Row:
    window = None
    if policy.failback == manager_pb2.FAILBACK_MODE_WINDOW:
        window = f"{policy.failback_window_start_hour:02d}-{policy.failback_window_end_hour:02d}"
    return {
        "preferred_owners": list(policy.preferred_owners),
        "possible_owners": list(policy.possible_owners),
        "max_failovers": effective_max,
        "max_failovers_is_default": not policy.HasField("max_failovers"),
        "failover_period_s": policy.failover_period_s,
        "failback": (
            enum_word(manager_pb2.FailbackMode, policy.failback, "FAILBACK_MODE_")
            if policy.failback
            else "never"
        ),
        "failback_window": window,
    }


def policy_text(policy: manager_pb2.FailoverPolicy, effective_max: int) -> str:
    row = policy_dict(policy, effective_max)
    parts = []
    if row["preferred_owners"]:
        parts.append(f"preferred owners {', '.join(row['preferred_owners'])}")
    if row["possible_owners"]:
        parts.append(f"possible owners {', '.join(row['possible_owners'])}")
    parts.append(f"at most {effective_max} failover(s) in {policy.failover_period_s / 3600:g} h")
    failback = row["failback"] if row["failback_window"] is None else f"window {row['failback_window']}"
    parts.append(f"failback {failback}")
    return "; ".join(parts)


def incident_dict(incident: manager_pb2.Incident) -> Row:
    return {
        "kind": enum_word(manager_pb2.IncidentKind, incident.kind, "INCIDENT_KIND_"),
        "time": timestamp(incident, "time"),
        "hosts": list(incident.hosts),
        "detail": incident.detail,
    }


def event_dict(event: manager_pb2.Event) -> Row:
    return {
        "time": timestamp(event, "time"),
        "kind": event.kind,
        "host": event.host or None,
        "vm": event.vm or None,
        "cluster": event.cluster or None,
        "detail": event.detail,
        "old_state": event.old_state or None,
        "new_state": event.new_state or None,
    }


def cluster_dict(cluster: manager_pb2.Cluster) -> Row:
    return {
        "name": cluster.name,
        "profile": profile_word(cluster.profile),
        "nodes": list(cluster.nodes),
        "reserve": cluster.reserve,
        "datacenter": cluster.datacenter or None,
        "state": enum_word(manager_pb2.ClusterState, cluster.state, "CLUSTER_STATE_"),
        "overcommit": (
            {
                "failed_nodes": list(cluster.overcommit.failed_nodes),
                "unplaced_vms": list(cluster.overcommit.unplaced_vms),
                "detail": cluster.overcommit.detail,
            }
            if cluster.HasField("overcommit")
            else None
        ),
        "volumes": [volume_dict(v) for v in cluster.volumes],
        "networks": [cluster_network_dict(n) for n in cluster.networks],
    }


def job_dict(job: manager_pb2.Job) -> Row:
    return {
        "id": job.id,
        "kind": job.kind,
        "target": job.target,
        "state": enum_word(manager_pb2.JobState, job.state, "JOB_STATE_"),
        "progress": job.progress,
        "message": job.message,
        "error": job.error or None,
        "created_at": timestamp(job, "created_at"),
        "updated_at": timestamp(job, "updated_at"),
        "steps": [
            {
                "vm": step.vm,
                "outcome": enum_word(manager_pb2.JobStepOutcome, step.outcome, "JOB_STEP_OUTCOME_"),
                "host": step.host or None,
                "detail": step.detail or None,
            }
            for step in job.steps
        ],
    }


def rating_dict(rating: manager_pb2.HostRating) -> Row:
    return {
        "host": rating.host,
        "cluster": rating.cluster or None,
        "stars": rating.stars,
        "storage": storage_text(rating.storage) if rating.HasField("storage") else None,
        "reasons": [
            {
                "code": enum_word(manager_pb2.RatingReason, reason.code, "RATING_REASON_"),
                "detail": reason.detail,
                "blocking": reason.blocking,
            }
            for reason in rating.reasons
        ],
    }


def stars_text(stars: float) -> str:
    """`★★★½` for 3.5 stars; `-` for none."""
    if stars <= 0:
        return "-"
    whole = int(stars)
    return "\N{BLACK STAR}" * whole + ("\N{VULGAR FRACTION ONE HALF}" if stars - whole >= 0.5 else "")


def storage_dict(location: common_pb2.StorageLocation) -> Row | None:
    """{"kind": "csv", "name": "Volume1"}: the words of the command line, or None when unset."""
    if not location.name and not location.kind:
        return None
    return {"kind": STORAGE_PREFIXES.get(location.kind, "unspecified"), "name": location.name}


def migration_phase(migration: manager_pb2.Migration) -> str:
    """ "pre_copy", "taken_over", ...: the enum's word; a manager older than the enum
    sends only the word (field `phase`)."""
    if migration.manager_phase == manager_pb2.MANAGER_MIGRATION_PHASE_UNSPECIFIED:
        return migration.phase
    return enum_word(manager_pb2.ManagerMigrationPhase, migration.manager_phase, "MANAGER_MIGRATION_PHASE_")


def migration_dict(migration: manager_pb2.Migration) -> Row:
    return {
        "id": migration.id,
        "vm": migration.vm,
        "vm_id": migration.vm_id,
        "kind": enum_word(manager_pb2.MigrationKind, migration.kind, "MIGRATION_KIND_"),
        "state": enum_word(manager_pb2.MigrationState, migration.state, "MIGRATION_STATE_"),
        "phase": migration_phase(migration) or None,
        "source": migration.source or None,
        "destination": migration.destination or None,
        "storage": storage_dict(migration.storage),
        "bytes": migration.bytes,
        "bytes_remaining": migration.bytes_remaining,
        # A network transfer: the bytes of the VM's files to copy in all.
        "bytes_total": migration.bytes_total,
        # A transfer across the cluster boundary: whether the VM is highly available after it.
        "highly_available_after": migration.highly_available_after,
        "passes": migration.passes,
        "duration_ms": migration.duration_ms,
        "blackout_ms": migration.blackout_ms,
        "mb_per_s": round(migration.mb_per_s, 1),
        "fell_back_to_quick": migration.fell_back_to_quick,
        "memory_digest": migration.memory_digest or None,
        "resumed_digest": migration.resumed_digest or None,
        "error": migration.error or None,
        "job_id": migration.job_id or None,
        "created_at": timestamp(migration, "created_at"),
        "updated_at": timestamp(migration, "updated_at"),
    }


def megabytes(count: int) -> float:
    # MB as in memory_mb (2**20 bytes): a 1024 MB VM shows about 1024 MB sent.
    return round(count / 2**20, 1)


def migration_table_row(row: Row) -> Row:
    """A migration's dict with the joined cells its table shows."""
    storage = row["storage"]
    destination = row["destination"] or "-"
    if row["kind"] == "storage" and storage:
        destination += f" {storage['kind']}:{storage['name']}"
    return {
        **row,
        "route": f"{row['source'] or '-'} \N{RIGHTWARDS ARROW} {destination}",
        "mb": f"{megabytes(row['bytes']):,.1f}",
        "duration": f"{row['duration_ms'] / 1000:.1f} s",
    }


def status_dict(status: manager_pb2.GetStatusResponse) -> Row:
    return {
        "version": status.manager_version,
        "hosts_total": status.hosts_total,
        "hosts_ok": status.hosts_ok,
        "vms_total": status.vms_total,
        "vms_running": status.vms_running,
        "jobs_running": status.jobs_running,
        "vmm_version": status.vmm_version or None,
        "clusters": [cluster_dict(c) for c in status.clusters],
    }


# Output.


def stdout() -> Console:
    # Wide enough that piped tables are not squeezed to 80 columns.
    return Console(soft_wrap=False, width=None if Console().is_terminal else 200)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, Mapping):
        return str(value.get("name", value))
    return str(value)


def print_table(title: str | None, rows: Iterable[Mapping[str, Any]], columns: Mapping[str, str]) -> None:
    """One row per dict; `columns` maps dict keys to column headers."""
    table = Table(title=title, title_justify="left")
    for header in columns.values():
        table.add_column(header)
    for row in rows:
        # Text, not str: a server's sentence with [brackets] is not rich markup.
        table.add_row(*(Text(_cell(row.get(key))) for key in columns))
    stdout().print(table)


def print_object(
    title: str, row: Mapping[str, Any], formatters: Mapping[str, Callable[[Any], str]] | None = None
) -> None:
    """One object as a two-column FIELD / VALUE table."""
    formatters = formatters or {}
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in row.items():
        text = formatters[key](value) if key in formatters else _cell(value)
        table.add_row(key, Text(text))
    stdout().print(table)


def _mib(value: int) -> str:
    return f"{value / 2**20:,.0f} MiB" if value < 2**30 else f"{value / 2**30:,.1f} GiB"


def volumes_text(volumes: list[Row]) -> str:
    return (
        "\n".join(
            f"{v['name']} ({v['kind']}, {_mib(v['free_bytes'])} free of {_mib(v['capacity_bytes'])})"
            for v in volumes
        )
        or "-"
    )


def disks_text(disks: list[Row]) -> str:
    return (
        "\n".join(f"{d['name']} ({_mib(d['free_bytes'])} free of {_mib(d['capacity_bytes'])})" for d in disks)
        or "-"
    )


def networks_text(networks: list[Row]) -> str:
    lines = []
    for n in networks:
        vlan = f", vlan {n['vlan_id']}" if n["vlan_id"] else ""
        lines.append(f"{n['name']} ({n['kind']} on {n['bound_to'] or '-'}{vlan})")
    return "\n".join(lines) or "-"


def cpu_text(cpu: Row) -> str:
    features = " ".join(cpu["features"]) or "-"
    return f"{cpu['vendor']} {cpu['model']}, {cpu['cores']} cores at {cpu['mhz']} MHz\nfeatures: {features}"


HOST_COLUMNS = {
    "name": "NAME",
    "cluster": "CLUSTER",
    "profile": "PROFILE",
    "state": "STATE",
    "address": "ADDRESS",
    "memory_free_mb": "FREE MB",
    "memory_mb": "MEMORY MB",
    "vm_count": "VMS",
    "rating": "RATING",
}
VM_COLUMNS = {
    "name": "NAME",
    "host": "HOST",
    "state": "STATE",
    "ha": "HA",
    "status": "STATUS",
    "memory_mb": "MEMORY MB",
    "cpus": "CPUS",
    "storage": "STORAGE",
    "networks": "NETWORKS",
}
CLUSTER_COLUMNS = {
    "name": "NAME",
    "profile": "PROFILE",
    "nodes": "NODES",
    "reserve": "RESERVE",
    "state": "STATE",
    "volumes": "VOLUMES",
}
JOB_COLUMNS = {
    "id": "ID",
    "kind": "KIND",
    "target": "TARGET",
    "state": "STATE",
    "progress": "PROGRESS",
    "message": "MESSAGE",
    "error": "ERROR",
    "updated_at": "UPDATED",
}
MIGRATION_COLUMNS = {
    "id": "ID",
    "vm": "VM",
    "kind": "KIND",
    "state": "STATE",
    "route": "SOURCE \N{RIGHTWARDS ARROW} DESTINATION",
    "passes": "PASSES",
    "mb": "MB",
    "blackout_ms": "BLACKOUT MS",
    "duration": "DURATION",
}
COMPONENT_COLUMNS = {"name": "NAME", "address": "ADDRESS", "pid": "PID", "alive": "ALIVE"}
CONTAINER_COLUMNS = {"name": "NAME", "container": "CONTAINER", "address": "ADDRESS", "state": "STATE"}

DETAIL_FORMATTERS: dict[str, Callable[[Any], str]] = {
    "cpu": cpu_text,
    "disks": disks_text,
    "networks": lambda value: (
        (cluster_networks_text(value) if "common" in value[0] else networks_text(value))
        if value and isinstance(value[0], dict)
        else _cell(value)
    ),
    "volumes": volumes_text,
    "capabilities": capabilities_text,
    "status_reasons": reasons_text,
    "resources": resources_text,
    "cluster_resources": lambda value: "\n".join(f"{r['name']} ({r['type']})" for r in value) or "-",
    "data_disks": lambda value: (
        "\n".join(
            f"{d['file']} ({_mib(d['size_bytes'])}, converted from {d['converted_from']})" for d in value
        )
        or "-"
    ),
    "ignored_reasons": reasons_text,
    "overcommit": lambda value: value["detail"] if isinstance(value, dict) else "-",
    "steps": lambda value: (
        "\n".join(f"{s['vm']}: {s['outcome']}" + (f" ({s['detail']})" if s["detail"] else "") for s in value)
        or "-"
    ),
    # A migration's storage is {"kind", "name"}; a VM's is already "csv:Volume1".
    "storage": lambda value: f"{value['kind']}:{value['name']}" if isinstance(value, dict) else _cell(value),
}
