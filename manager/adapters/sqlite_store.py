"""The Store on SQLite: the manager's records survive restarts and kill -9.

WAL mode with synchronous=FULL: a committed record is on disk before the call
returns, and readers never block the writer. Records are kept as JSON next to the
columns queries filter and sort on, so adding a field does not need a migration.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from havm.contract.hosts import CpuSpec
from manager.core.config_status import ConfigCause, StatusReason
from manager.core.errors import AlreadyExistsError
from manager.core.migration_phase import MigrationPhase
from manager.core.model import (
    DEFAULT_FAILOVER_PERIOD_S,
    ClusterRecord,
    ClusterResource,
    ConfigStatus,
    DataDisk,
    DiskInfo,
    FailbackMode,
    FailedAction,
    FailoverPolicy,
    HostRecord,
    Incident,
    IncidentKind,
    JobRecord,
    JobStep,
    JobStepOutcome,
    MigrationKind,
    MigrationRecord,
    NetworkInfo,
    RestartPriority,
    StorageKind,
    StorageLocation,
    VmRecord,
    VolumeInfo,
    Workload,
)
from manager.core.profiles import HostCapabilities
from manager.core.states import HostState, JobState, MigrationState, VmState

SCHEMA = """
CREATE TABLE IF NOT EXISTS hosts (
    name TEXT PRIMARY KEY,
    cluster TEXT,
    address TEXT,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    last_refresh TEXT,
    data TEXT NOT NULL           -- topology description and last inventory
);
CREATE TABLE IF NOT EXISTS clusters (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vms (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    host TEXT,
    state TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS migrations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    vm_id TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS vms_by_host ON vms(host);
CREATE INDEX IF NOT EXISTS migrations_by_state ON migrations(state);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state);
"""


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _encode(record: Any) -> str:
    def default(value: object) -> object:
        if isinstance(value, datetime):
            return value.isoformat()
        if hasattr(value, "value"):
            return value.value  # an Enum
        raise TypeError(f"cannot store {type(value).__name__}")

    return json.dumps(asdict(record), default=default, sort_keys=True)


def _storage(raw: dict[str, Any] | None) -> StorageLocation | None:
    return StorageLocation(StorageKind(raw["kind"]), raw["name"]) if raw else None


def _host(raw: dict[str, Any]) -> HostRecord:
    cpu = raw["cpu"]
    return HostRecord(
        name=raw["name"],
        cluster=raw["cluster"],
        profile=raw["profile"],
        address=raw["address"],
        cpu=CpuSpec(cpu["vendor"], cpu["model"], tuple(cpu["features"]), cpu["cores"], cpu["mhz"]),
        memory_mb=raw["memory_mb"],
        host_reserve_mb=raw["host_reserve_mb"],
        memory_free_mb=raw["memory_free_mb"],
        disks=tuple(DiskInfo(**d) for d in raw["disks"]),
        networks=tuple(NetworkInfo(**n) for n in raw["networks"]),
        volumes=tuple(_volume(v) for v in raw["volumes"]),
        state=HostState(raw["state"]),
        state_reason=raw["state_reason"],
        last_refresh=_parse_time(raw["last_refresh"]),
        boot_id=raw["boot_id"],
        migration_address=raw.get("migration_address"),
        added_at_runtime=raw.get("added_at_runtime", False),
        # Absent in databases written before the marker existed.
        fence_decided=raw.get("fence_decided", False),
        # Absent in databases written before agents reported them, and None until the
        # host's agent has answered once.
        reported_capabilities=_capabilities(raw.get("reported_capabilities")),
    )


def _capabilities(raw: dict[str, Any] | None) -> HostCapabilities | None:
    if not raw:
        return None
    return HostCapabilities(
        live_migration=raw["live_migration"],
        quick_migration=raw["quick_migration"],
        csv=raw["csv"],
        network_kind=raw["network_kind"],
        library_server=raw.get("library_server", False),
    )


def _volume(raw: dict[str, Any]) -> VolumeInfo:
    return VolumeInfo(raw["name"], StorageKind(raw["kind"]), raw["capacity_bytes"], raw["free_bytes"])


def _cluster(raw: dict[str, Any]) -> ClusterRecord:
    return ClusterRecord(
        name=raw["name"],
        profile=raw["profile"],
        reserve=raw["reserve"],
        nodes=tuple(raw["nodes"]),
        volumes=tuple(_volume(v) for v in raw["volumes"]),
        visibility=tuple((name, tuple(nodes)) for name, nodes in raw["visibility"]),
        reserve_overridden=raw.get("reserve_overridden", False),
        datacenter=raw.get("datacenter"),
    )


def _reasons(raw: list[Any] | tuple[Any, ...]) -> tuple[StatusReason, ...]:
    """Records written before causes were typed kept sentences only, and a newer manager
    may have written a cause this one does not know: those are dropped, and the
    judgement at start lists the reasons again."""
    known = {c.value for c in ConfigCause}
    return tuple(
        StatusReason(ConfigCause(r["cause"]), r["detail"], r.get("subject", ""))
        for r in raw
        if isinstance(r, dict) and r.get("cause") in known
    )


def _vm(raw: dict[str, Any]) -> VmRecord:
    return VmRecord(
        id=raw["id"],
        name=raw["name"],
        host=raw["host"],
        state=VmState(raw["state"]),
        highly_available=raw["highly_available"],
        memory_mb=raw["memory_mb"],
        cpus=raw["cpus"],
        disk_gb=raw["disk_gb"],
        storage=_storage(raw["storage"]),
        networks=tuple(raw["networks"]),
        workload=Workload(**raw["workload"]),
        imported=raw["imported"],
        created_at=_parse_time(raw["created_at"]),
        reason=raw["reason"],
        status=ConfigStatus(raw["status"]),
        status_reasons=_reasons(raw["status_reasons"]),
        ignored_reasons=_reasons(raw.get("ignored_reasons", ())),
        # Records written before high availability lack these fields.
        restart_priority=RestartPriority(raw.get("restart_priority", "medium")),
        failover_count=raw.get("failover_count", 0),
        lease_generation=raw.get("lease_generation", 0),
        failover_from=raw.get("failover_from"),
        restart_target=raw.get("restart_target"),
        restart_attempts=tuple((h, n) for h, n in raw.get("restart_attempts", ())),
        # Records written before migrations lack these.
        processor_compatibility=raw.get("processor_compatibility", False),
        migration_id=raw.get("migration_id"),
        # Records written before failover policies lack these.
        policy=_policy(raw.get("policy")),
        failover_times=tuple(datetime.fromisoformat(t) for t in raw.get("failover_times", ())),
        failed_action=FailedAction(raw["failed_action"]) if raw.get("failed_action") else None,
        incident=_incident(raw.get("incident")),
        threshold_waived=raw.get("threshold_waived", False),
        # Records written before pass-through disks, ISO images and group resources lack these.
        passthrough_disks=tuple(
            StorageLocation(StorageKind(d["kind"]), d["name"]) for d in raw.get("passthrough_disks", ())
        ),
        iso_image=raw.get("iso_image", ""),
        cluster_resources=tuple(
            ClusterResource(r["name"], r["type"]) for r in raw.get("cluster_resources", ())
        ),
        data_disks=tuple(
            DataDisk(
                d["file"],
                d["size_bytes"],
                StorageLocation(StorageKind(d["converted_from"]["kind"]), d["converted_from"]["name"]),
            )
            for d in raw.get("data_disks", ())
        ),
    )


def _policy(raw: dict[str, Any] | None) -> FailoverPolicy:
    if not raw:
        return FailoverPolicy()
    window = raw.get("failback_window")
    return FailoverPolicy(
        preferred_owners=tuple(raw.get("preferred_owners", ())),
        possible_owners=tuple(raw.get("possible_owners", ())),
        max_failovers=raw.get("max_failovers"),
        failover_period_s=raw.get("failover_period_s", DEFAULT_FAILOVER_PERIOD_S),
        failback=FailbackMode(raw.get("failback", "never")),
        failback_window=(window[0], window[1]) if window else None,
    )


def _incident(raw: dict[str, Any] | None) -> Incident | None:
    if not raw:
        return None
    return Incident(
        kind=IncidentKind(raw["kind"]),
        time=datetime.fromisoformat(raw["time"]),
        hosts=tuple(raw["hosts"]),
        detail=raw["detail"],
    )


def _phase(value: str, state: MigrationState) -> MigrationPhase:
    """A stored phase by its value. A database written before phases were an enum may
    hold "unknown" (a phase a newer agent reported): such a migration had begun."""
    try:
        return MigrationPhase(value)
    except ValueError:
        return MigrationPhase.COMPLETED if state is MigrationState.COMPLETED else MigrationPhase.PREPARING


def _migration(raw: dict[str, Any]) -> MigrationRecord:
    return MigrationRecord(
        id=raw["id"],
        vm_id=raw["vm_id"],
        vm_name=raw["vm_name"],
        kind=MigrationKind(raw["kind"]),
        state=MigrationState(raw["state"]),
        source=raw["source"],
        destination=raw["destination"],
        created_at=datetime.fromisoformat(raw["created_at"]),
        updated_at=datetime.fromisoformat(raw["updated_at"]),
        storage=_storage(raw["storage"]),
        job_id=raw["job_id"],
        lease_generation=raw["lease_generation"],
        vm_state_before=VmState(raw["vm_state_before"]),
        no_converge=raw["no_converge"],
        phase=_phase(raw["phase"], MigrationState(raw["state"])),
        passes=raw["passes"],
        bytes_sent=raw["bytes_sent"],
        bytes_remaining=raw["bytes_remaining"],
        mb_per_s=raw["mb_per_s"],
        duration_ms=raw["duration_ms"],
        blackout_ms=raw["blackout_ms"],
        error=raw["error"],
        fell_back_to_quick=raw["fell_back_to_quick"],
        memory_digest=raw["memory_digest"],
        resumed_digest=raw["resumed_digest"],
        started_at=_optional_time(raw.get("started_at")),
        down_at=_optional_time(raw.get("down_at")),
        highly_available_after=raw.get("highly_available_after"),
        bytes_total=raw.get("bytes_total", 0),
    )


def _optional_time(raw: str | None) -> datetime | None:
    return datetime.fromisoformat(raw) if raw else None


def _job(raw: dict[str, Any]) -> JobRecord:
    return JobRecord(
        id=raw["id"],
        kind=raw["kind"],
        target=raw["target"],
        state=JobState(raw["state"]),
        progress=raw["progress"],
        message=raw["message"],
        error=raw["error"],
        created_at=datetime.fromisoformat(raw["created_at"]),
        updated_at=datetime.fromisoformat(raw["updated_at"]),
        steps=tuple(
            JobStep(s["vm"], JobStepOutcome(s["outcome"]), s["host"], s["detail"])
            for s in raw.get("steps", ())
        ),
        request_id=raw.get("request_id", ""),
    )


class SqliteStore:
    """Store on one SQLite file; every write is its own committed transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._add_request_ids()

    def _add_request_ids(self) -> None:
        """A database of a manager from before request ids gets their column."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "request_id" not in columns:
            self._db.execute("ALTER TABLE jobs ADD COLUMN request_id TEXT")
        self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_request ON jobs(request_id)")

    def _one(self, sql: str, *args: object) -> dict[str, Any] | None:
        row = self._db.execute(sql, args).fetchone()
        return json.loads(row[0]) if row else None

    def _all(self, sql: str, *args: object) -> list[dict[str, Any]]:
        return [json.loads(row[0]) for row in self._db.execute(sql, args).fetchall()]

    def get_host(self, name: str) -> HostRecord | None:
        raw = self._one("SELECT data FROM hosts WHERE name = ?", name)
        return _host(raw) if raw else None

    def list_hosts(self) -> list[HostRecord]:
        return [_host(r) for r in self._all("SELECT data FROM hosts ORDER BY name")]

    def put_host(self, host: HostRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO hosts (name, cluster, address, state, reason, last_refresh, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                host.name,
                host.cluster,
                host.address,
                host.state.value,
                host.state_reason,
                _time(host.last_refresh),
                _encode(host),
            ),
        )

    def delete_host(self, name: str) -> None:
        self._db.execute("DELETE FROM hosts WHERE name = ?", (name,))

    def delete_cluster(self, name: str) -> None:
        self._db.execute("DELETE FROM clusters WHERE name = ?", (name,))

    def get_cluster(self, name: str) -> ClusterRecord | None:
        raw = self._one("SELECT data FROM clusters WHERE name = ?", name)
        return _cluster(raw) if raw else None

    def list_clusters(self) -> list[ClusterRecord]:
        return [_cluster(r) for r in self._all("SELECT data FROM clusters ORDER BY name")]

    def put_cluster(self, cluster: ClusterRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO clusters (name, data) VALUES (?, ?)",
            (cluster.name, _encode(cluster)),
        )

    def get_vm(self, vm_id: str) -> VmRecord | None:
        raw = self._one("SELECT data FROM vms WHERE id = ?", vm_id)
        return _vm(raw) if raw else None

    def get_vm_by_name(self, name: str) -> VmRecord | None:
        raw = self._one("SELECT data FROM vms WHERE name = ?", name)
        return _vm(raw) if raw else None

    def list_vms(self, host: str | None = None) -> list[VmRecord]:
        if host is None:
            return [_vm(r) for r in self._all("SELECT data FROM vms ORDER BY name")]
        return [_vm(r) for r in self._all("SELECT data FROM vms WHERE host = ? ORDER BY name", host)]

    def put_vm(self, vm: VmRecord) -> None:
        try:
            self._db.execute(
                "INSERT INTO vms (id, name, host, state, data) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET name = excluded.name, host = excluded.host,"
                " state = excluded.state, data = excluded.data",
                (vm.id, vm.name, vm.host, vm.state.value, _encode(vm)),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExistsError(f"a VM named {vm.name} already exists") from None

    def delete_vm(self, vm_id: str) -> None:
        self._db.execute("DELETE FROM vms WHERE id = ?", (vm_id,))

    def get_job(self, job_id: str) -> JobRecord | None:
        raw = self._one("SELECT data FROM jobs WHERE id = ?", job_id)
        return _job(raw) if raw else None

    def list_jobs(self, limit: int, state: JobState | None = None) -> list[JobRecord]:
        if state is None:
            rows = self._all("SELECT data FROM jobs ORDER BY created_at DESC, seq DESC LIMIT ?", limit)
        else:
            rows = self._all(
                "SELECT data FROM jobs WHERE state = ? ORDER BY created_at DESC, seq DESC LIMIT ?",
                state.value,
                limit,
            )
        return [_job(r) for r in rows]

    def put_job(self, job: JobRecord) -> None:
        self._db.execute(
            "INSERT INTO jobs (id, kind, target, state, created_at, data, request_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET state = excluded.state, data = excluded.data",
            (
                job.id,
                job.kind,
                job.target,
                job.state.value,
                job.created_at.isoformat(),
                _encode(job),
                job.request_id or None,
            ),
        )

    def get_job_by_request(self, request_id: str) -> JobRecord | None:
        raw = self._one("SELECT data FROM jobs WHERE request_id = ?", request_id)
        return _job(raw) if raw else None

    def get_migration(self, migration_id: str) -> MigrationRecord | None:
        raw = self._one("SELECT data FROM migrations WHERE id = ?", migration_id)
        return _migration(raw) if raw else None

    def list_migrations(
        self, limit: int, states: frozenset[MigrationState] | None = None
    ) -> list[MigrationRecord]:
        if states is None:
            rows = self._all("SELECT data FROM migrations ORDER BY created_at DESC, seq DESC LIMIT ?", limit)
        else:
            marks = ", ".join("?" for _ in states)
            rows = self._all(
                f"SELECT data FROM migrations WHERE state IN ({marks})"
                " ORDER BY created_at DESC, seq DESC LIMIT ?",
                *sorted(s.value for s in states),
                limit,
            )
        return [_migration(r) for r in rows]

    def put_migration(self, migration: MigrationRecord) -> None:
        self._db.execute(
            "INSERT INTO migrations (id, vm_id, state, created_at, data) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET state = excluded.state, data = excluded.data",
            (
                migration.id,
                migration.vm_id,
                migration.state.value,
                migration.created_at.isoformat(),
                _encode(migration),
            ),
        )

    def close(self) -> None:
        self._db.close()
