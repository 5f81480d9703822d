"""One contract for every Store: SQLite and in-memory must behave the same."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from havm.contract.hosts import CpuSpec
from manager.adapters.memory_store import MemoryStore
from manager.adapters.sqlite_store import SqliteStore
from manager.core.config_status import ConfigCause, StatusReason
from manager.core.errors import AlreadyExistsError
from manager.core.migration_phase import MigrationPhase
from manager.core.model import (
    ClusterRecord,
    DiskInfo,
    HostRecord,
    JobRecord,
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
from manager.core.states import HostState, JobState, MigrationState, VmState
from manager.core.store import Store

T0 = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
GIB = 1024**3


def host(name: str = "node1") -> HostRecord:
    return HostRecord(
        name=name,
        cluster="cluster1",
        profile="hyperv-2008r2",
        address="127.0.0.1:5000",
        cpu=CpuSpec("GenuineIntel", "Xeon", ("sse4_2",), 8, 2933),
        memory_mb=32768,
        host_reserve_mb=2048,
        memory_free_mb=30000,
        disks=(DiskInfo("C", 500 * GIB, 400 * GIB),),
        networks=(NetworkInfo("External", "virtual_network", "nic", 0),),
        volumes=(VolumeInfo("Volume1", StorageKind.CSV, 2048 * GIB, 2000 * GIB),),
        state=HostState.OK,
        state_reason="",
        last_refresh=T0,
        boot_id="b1",
    )


def vm(name: str = "web1", vm_id: str = "id-1", host_name: str | None = "node1") -> VmRecord:
    return VmRecord(
        id=vm_id,
        name=name,
        host=host_name,
        state=VmState.RUNNING,
        highly_available=True,
        memory_mb=1024,
        cpus=2,
        disk_gb=20,
        storage=StorageLocation(StorageKind.CSV, "Volume1"),
        networks=("External",),
        workload=Workload(1.5, 2.0),
        created_at=T0,
        status_reasons=(
            StatusReason(ConfigCause.SHARED_LUN, "shared"),
            StatusReason(ConfigCause.ISO_ATTACHED, "iso"),
        ),
        ignored_reasons=(StatusReason(ConfigCause.ISO_ATTACHED, "iso"),),
    )


def job(job_id: str, created: datetime, state: JobState = JobState.RUNNING) -> JobRecord:
    return JobRecord(job_id, "create_vm", "web1", state, 10, "doing", "", created, created)


class StoreContract:
    """Subclasses provide `store`; every test runs against each implementation."""

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        raise NotImplementedError

    def test_the_fencing_decision_round_trips(self, store: Store) -> None:
        decided = replace(host(), state=HostState.NOT_RESPONDING, fence_decided=True)
        store.put_host(decided)
        assert store.get_host("node1") == decided

    def test_hosts_round_trip(self, store: Store) -> None:
        assert store.get_host("node1") is None
        store.put_host(host("node2"))
        store.put_host(host("node1"))
        assert store.get_host("node1") == host("node1")
        assert [h.name for h in store.list_hosts()] == ["node1", "node2"]
        changed = replace(
            host("node1"), state=HostState.NOT_RESPONDING, state_reason="gone", last_refresh=None
        )
        store.put_host(changed)
        assert store.get_host("node1") == changed

    def test_clusters_round_trip(self, store: Store) -> None:
        cluster = ClusterRecord(
            "cluster1",
            "hyperv-2008r2",
            1,
            ("node1", "node2"),
            (VolumeInfo("lun1", StorageKind.LUN, GIB, GIB),),
            (("lun1", ("node1",)),),
        )
        store.put_cluster(cluster)
        assert store.get_cluster("cluster1") == cluster
        assert store.list_clusters() == [cluster]
        assert store.get_cluster("nope") is None

    def test_vms_round_trip_by_id_name_and_host(self, store: Store) -> None:
        store.put_vm(vm("web1", "id-1"))
        store.put_vm(vm("db1", "id-2", "node2"))
        store.put_vm(vm("nohost", "id-3", None))
        assert store.get_vm("id-1") == vm("web1", "id-1")
        assert store.get_vm_by_name("db1") == vm("db1", "id-2", "node2")
        assert store.get_vm_by_name("nohost") == vm("nohost", "id-3", None)
        assert [v.name for v in store.list_vms()] == ["db1", "nohost", "web1"]
        assert [v.name for v in store.list_vms("node2")] == ["db1"]
        store.put_vm(replace(vm("web1", "id-1"), state=VmState.STOPPED, name="web2"))
        assert store.get_vm_by_name("web1") is None
        assert store.get_vm("id-1").state is VmState.STOPPED  # type: ignore[union-attr]
        store.delete_vm("id-1")
        assert store.get_vm("id-1") is None

    def test_failover_fields_round_trip(self, store: Store) -> None:
        record = replace(
            vm("web1", "id-1"),
            restart_priority=RestartPriority.HIGH,
            failover_count=2,
            lease_generation=7,
            failover_from="node3",
            restart_target="node2",
            restart_attempts=(("node2", 1), ("node4", 2)),
        )
        store.put_vm(record)
        assert store.get_vm("id-1") == record
        assert vm("db1", "id-2").restart_priority is RestartPriority.MEDIUM

    def test_vm_names_are_unique(self, store: Store) -> None:
        store.put_vm(vm("web1", "id-1"))
        with pytest.raises(AlreadyExistsError, match="web1"):
            store.put_vm(vm("web1", "id-2"))
        assert store.get_vm("id-2") is None

    def test_jobs_newest_first_with_limit_and_state(self, store: Store) -> None:
        store.put_job(job("a", T0))
        store.put_job(job("b", T0 + timedelta(seconds=1), JobState.COMPLETED))
        store.put_job(job("c", T0 + timedelta(seconds=1)))
        assert [j.id for j in store.list_jobs(10)] == ["c", "b", "a"]
        assert [j.id for j in store.list_jobs(2)] == ["c", "b"]
        assert [j.id for j in store.list_jobs(10, JobState.RUNNING)] == ["c", "a"]
        done = replace(job("a", T0), state=JobState.FAILED, error="boom", progress=40)
        store.put_job(done)
        assert store.get_job("a") == done
        assert [j.id for j in store.list_jobs(10)] == ["c", "b", "a"]
        assert store.get_job("zzz") is None

    def test_migrations_newest_first_by_state_and_fields_round_trip(self, store: Store) -> None:
        def migration(mid: str, created: datetime, state: MigrationState) -> MigrationRecord:
            return MigrationRecord(
                mid, "id-1", "web1", MigrationKind.LIVE, state, "node1", "node2", created, created
            )

        store.put_migration(migration("a", T0, MigrationState.COMPLETED))
        store.put_migration(migration("b", T0 + timedelta(seconds=1), MigrationState.RUNNING))
        store.put_migration(migration("c", T0 + timedelta(seconds=1), MigrationState.QUEUED))
        assert [m.id for m in store.list_migrations(10)] == ["c", "b", "a"]
        assert [m.id for m in store.list_migrations(1)] == ["c"]
        open_states = frozenset({MigrationState.QUEUED, MigrationState.RUNNING})
        assert [m.id for m in store.list_migrations(10, open_states)] == ["c", "b"]
        full = replace(
            migration("b", T0 + timedelta(seconds=1), MigrationState.FAILED),
            kind=MigrationKind.STORAGE,
            storage=StorageLocation(StorageKind.LUN, "lun1"),
            job_id="j1",
            lease_generation=5,
            vm_state_before=VmState.PAUSED,
            no_converge="fail",
            phase=MigrationPhase.TAKEN_OVER,
            passes=4,
            bytes_sent=10**9,
            bytes_remaining=12,
            mb_per_s=412.5,
            duration_ms=2500,
            blackout_ms=31,
            error="did not converge",
            fell_back_to_quick=True,
            memory_digest="ab",
            resumed_digest="ab",
        )
        store.put_migration(full)
        assert store.get_migration("b") == full
        assert [m.id for m in store.list_migrations(10, open_states)] == ["c"]
        assert store.get_migration("zzz") is None

    def test_migration_fields_of_vms_and_hosts_round_trip(self, store: Store) -> None:
        record = replace(vm("web1", "id-1"), processor_compatibility=True, migration_id="m1")
        store.put_vm(record)
        assert store.get_vm("id-1") == record
        moved = replace(host("node1"), migration_address="10.0.0.1:5000")
        store.put_host(moved)
        assert store.get_host("node1") == moved


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[Store]:
        yield MemoryStore()


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        store = SqliteStore(tmp_path / "manager.db")
        yield store
        store.close()

    def test_records_survive_reopening(self, tmp_path: Path) -> None:
        path = tmp_path / "again.db"
        first = SqliteStore(path)
        first.put_vm(vm())
        first.put_job(job("a", T0))
        first.close()
        second = SqliteStore(path)
        assert second.get_vm("id-1") == vm()
        assert second.get_job("a") == job("a", T0)
        assert second._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        second.close()

    def test_migration_phases_of_older_databases_read(self, tmp_path: Path) -> None:
        # The phase is stored as its word, as it was before it was an enum; the one word
        # older managers wrote that the enum lacks ("unknown": a newer agent's phase) reads
        # as a migration that had begun.
        path = tmp_path / "older.db"
        first = SqliteStore(path)
        running = MigrationRecord(
            "m1", "id-1", "web1", MigrationKind.LIVE, MigrationState.RUNNING, "node1", "node2", T0, T0
        )
        first.put_migration(replace(running, phase=MigrationPhase.PRE_COPY))
        first.put_migration(replace(running, id="m2", state=MigrationState.COMPLETED))
        assert (
            '"phase": "pre_copy"'
            in first._db.execute("SELECT data FROM migrations WHERE id = 'm1'").fetchone()[0]
        )
        for mid in ("m1", "m2"):
            first._db.execute(
                "UPDATE migrations SET data = json_set(data, '$.phase', 'unknown') WHERE id = ?", (mid,)
            )
        first.close()
        second = SqliteStore(path)
        assert second.get_migration("m1").phase is MigrationPhase.PREPARING  # type: ignore[union-attr]
        assert second.get_migration("m2").phase is MigrationPhase.COMPLETED  # type: ignore[union-attr]
        second.close()
