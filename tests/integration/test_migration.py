"""Migration end to end: real agents hand running VMs to each other over their own gRPC
stream while the manager orchestrates, and faults are injected at each phase.

Every test ends by checking the invariants: no VM is active on two hosts, every VM the
test made runs exactly once, where the manager says it does, and its journal on disk is
one unbroken run of writes (nothing lost, nothing written twice).

What needs no real process runs on virtual time in tests/scenarios, with the same
invariants and the journal check: compatibility refusals and processor compatibility
mode, storage migration, the per-host limit's queue, the migration network cut, no
convergence, and every crash point."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_harness import (
    HAVM,
    LocalCluster,
    active_copies,
    alive,
    assert_invariant,
    inventory,
    split_brains,
    start_cluster,
    stop_cluster,
    wait_for,
)

from havm.cli.render import migration_dict, vm_dict
from havm.v1 import agent_pb2, common_pb2, manager_pb2, manager_pb2_grpc
from node_agent.adapters.files import read_journal_records

pytestmark = pytest.mark.integration

# n1-n3: a Windows Server 2008 R2 cluster of one Intel generation; q1, q2: a Windows
# Server 2008 cluster (quick migration only).
TOPOLOGY = """
version: 1
host_defaults:
  profile: hyperv-2008r2
  cpu: {vendor: GenuineIntel, model: Xeon X5570, features: [sse3, ssse3, sse4_1, sse4_2, popcnt, vmx, nx, lm],
        cores: 8, mhz: 2933}
  memory_mb: 16384
  host_reserve_mb: 1024
  disks: [{name: C, capacity_gb: 200}, {name: D, capacity_gb: 200}]
  networks:
    - {name: External, bound_to: "NIC 1"}
    - {name: Backend, bound_to: "NIC 2"}
migration:
  max_live_migrations_per_host: 2
  no_converge: fail
  stall_timeout_s: 3
clusters:
  - name: c1
    profile: hyperv-2008r2
    reserve: 1
    nodes: [n1, n2, n3]
    csvs: [{name: Volume1, capacity_gb: 500}]
    luns: [{name: lun1, capacity_gb: 100}]
  - name: c2
    profile: hyperv-2008
    reserve: 0
    nodes: [q1, q2]
    luns: [{name: qlun1, capacity_gb: 100}]
hosts:
  - {name: n1}
  - {name: n2}
  - {name: n3}
  - {name: q1, profile: hyperv-2008}
  - {name: q2, profile: hyperv-2008}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    directory = tmp_path_factory.mktemp("migration")
    path = directory / "topology.yaml"
    path.write_text(TOPOLOGY)
    local = start_cluster(directory / "state", "--topology", str(path))
    try:
        yield local
    finally:
        stop_cluster(local)


# ---------------------------------------------------------------------------- helpers


_stubs: dict[str, manager_pb2_grpc.ManagerServiceStub] = {}


def api(cluster: LocalCluster) -> manager_pb2_grpc.ManagerServiceStub:
    """The manager's gRPC API, for the reads and set-ups that are not what a test is about
    (quicker than a `havm` process per call)."""
    address = cluster.component("manager")["address"]
    if address not in _stubs:
        _stubs[address] = manager_pb2_grpc.ManagerServiceStub(cluster.channel("manager"))
    return _stubs[address]


def run_job(cluster: LocalCluster, job: manager_pb2.Job) -> None:
    for update in api(cluster).WatchJob(manager_pb2.WatchJobRequest(id=job.id), timeout=60):
        job = update.job
    assert job.state == manager_pb2.JOB_STATE_COMPLETED, job.error


def create(
    cluster: LocalCluster,
    name: str,
    host: str,
    storage: str = "",
    memory_mb: int = 256,
    dirty_rate: float = 20,
    networks: tuple[str, ...] = (),
) -> dict:
    kinds = {"csv": common_pb2.STORAGE_KIND_CSV, "lun": common_pb2.STORAGE_KIND_LUN}
    kind, _, storage_name = storage.partition(":")
    request = manager_pb2.CreateVmRequest(
        name=name,
        memory_mb=memory_mb,
        disk_gb=1,
        host=host,
        highly_available=not host.startswith("s"),
        networks=list(networks),
        workload=common_pb2.GuestWorkload(dirty_rate_mb_per_s=dirty_rate, journal_writes_per_s=50),
    )
    if storage:
        request.storage.kind = kinds.get(kind, common_pb2.STORAGE_KIND_LOCAL_DISK)
        request.storage.name = storage_name
    run_job(cluster, api(cluster).CreateVm(request, timeout=30).job)
    return vm(cluster, name)


def operate(cluster: LocalCluster, name: str, operation: int) -> None:
    request = manager_pb2.OperateVmRequest(name=name, operation=operation)
    run_job(cluster, api(cluster).OperateVm(request, timeout=10).job)


def vm(cluster: LocalCluster, name: str) -> dict:
    return vm_dict(api(cluster).GetVm(manager_pb2.GetVmRequest(name=name), timeout=10).vm)


def migration(cluster: LocalCluster, migration_id: str) -> dict:
    reply = api(cluster).GetMigration(manager_pb2.GetMigrationRequest(id=migration_id), timeout=10)
    return migration_dict(reply.migration)


def migrations(cluster: LocalCluster) -> list[dict]:
    reply = api(cluster).ListMigrations(manager_pb2.ListMigrationsRequest(limit=20), timeout=10)
    return [migration_dict(m) for m in reply.migrations]


def migrate(cluster: LocalCluster, name: str, *args: str, timeout: float = 90) -> dict:
    """`havm vm migrate -o json`, whatever its outcome: the final migration."""
    result = cluster.havm("vm", "migrate", name, *args, "-o", "json", timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.strip(), f"no migration printed (exit {result.code}): {result.stderr}"
    figures = result.json()
    assert (result.code == 0) == (figures["state"] == "completed"), (result.code, figures, result.stderr)
    return figures


def start_migration(cluster: LocalCluster, name: str, *args: str) -> subprocess.Popen[str]:
    """`havm vm migrate` in the background, to inject a fault while it runs."""
    return subprocess.Popen(
        [*HAVM, "--state-dir", str(cluster.state_dir), "vm", "migrate", name, *args, "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"havm vm migrate did not end: {err}") from None
    assert "Traceback" not in err, err
    return process.returncode, out, err


def current_migration(cluster: LocalCluster, vm_name: str) -> dict | None:
    for item in migrations(cluster):
        if item["vm"] == vm_name and item["state"] in ("queued", "running"):
            return item
    return None


def wait_phase(cluster: LocalCluster, vm_name: str, phase: str, timeout: float = 30) -> dict:
    return wait_for(
        lambda: (m := current_migration(cluster, vm_name)) is not None and m["phase"] == phase and m,
        timeout=timeout,
        interval=0.02,
        what=f"the migration of {vm_name} in phase {phase}",
    )


def vm_dir(cluster: LocalCluster, record: dict) -> Path:
    kind, _, name = record["storage"].partition(":")
    if kind == "local":
        return cluster.state_dir / "hosts" / record["host"] / "disks" / name / record["id"]
    return cluster.state_dir / "san" / kind / name / record["id"]


def journal(cluster: LocalCluster, record: dict) -> list[tuple[int, int]]:
    """(seq, lease generation) of every valid journal record on the VM's disk, in order."""
    disk = vm_dir(cluster, record) / "disk0.vhd"
    return [(entry.seq, entry.generation) for entry in read_journal_records(disk)]


def assert_journal_continuous(cluster: LocalCluster, name: str, written_before: int) -> None:
    """The journal is one run from seq 1, it went on after the move, and the lease
    generation never goes back: no write was lost, repeated or made by a stale copy."""
    record = vm(cluster, name)
    time.sleep(0.3)  # let the guest write on its new host
    entries = journal(cluster, record)
    seqs = [seq for seq, _ in entries]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) > written_before, f"{name}: no write after the move ({len(seqs)} <= {written_before})"
    generations = [generation for _, generation in entries]
    assert generations == sorted(generations), f"{name}: a write with an older lease came after a newer one"
    status = cluster.guest_status(record["host"], record["id"])
    assert status.journal_last_seq >= seqs[-1] - 1


def journal_length(cluster: LocalCluster, name: str) -> int:
    record = vm(cluster, name)
    return cluster.guest_status(record["host"], record["id"]).journal_last_seq


class InvariantWatch:
    """Samples the agents' inventories while a migration runs: no two copies of a VM may
    hold the same or the newest lease generation at any moment (see assert_invariant)."""

    def __init__(self, cluster: LocalCluster, hosts: list[str]) -> None:
        self.cluster, self.hosts = cluster, hosts
        self.samples, self.violations = 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> InvariantWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        while not self._stop.is_set():
            doubles = split_brains(active_copies(self.cluster, self.hosts))
            self.violations.extend(doubles.items())
            self.samples += 1
            time.sleep(0.01)


def wait_host_ok(cluster: LocalCluster, host: str) -> None:
    def state() -> int:
        return api(cluster).GetHost(manager_pb2.GetHostRequest(name=host), timeout=10).host.state

    wait_for(lambda: state() == manager_pb2.HOST_STATE_OK, timeout=30, what=f"{host} back in service")


def assert_runs_once(cluster: LocalCluster, names: list[str]) -> None:
    assert_invariant(cluster)
    copies = active_copies(cluster)
    for name in names:
        record = vm(cluster, name)
        hosts = list(copies.get(record["id"], {}))
        assert hosts == [record["host"]], f"{name} is active on {hosts}; the manager says {record['host']}"
        assert record["state"] == "running", record


def remove(cluster: LocalCluster, *names: str) -> None:
    """Free the hosts' memory for the next test."""
    for name in names:
        if vm(cluster, name)["state"] != "stopped":
            operate(cluster, name, agent_pb2.VM_OPERATION_TURN_OFF)
        run_job(cluster, api(cluster).DeleteVm(manager_pb2.DeleteVmRequest(name=name), timeout=10).job)


# ------------------------------------------------------------------------------ tests


def test_live_migration_of_a_busy_guest_keeps_memory_and_journal(cluster: LocalCluster) -> None:
    created = create(cluster, "busy", "n1", memory_mb=512)
    time.sleep(0.5)
    before = journal_length(cluster, "busy")

    with InvariantWatch(cluster, ["n1", "n2"]) as watch:
        figures = migrate(cluster, "busy", "--to", "n2")
    assert watch.samples > 10, "the invariant was hardly watched"
    assert not watch.violations, watch.violations

    assert figures["kind"] == "live" and figures["state"] == "completed"
    assert (figures["source"], figures["destination"]) == ("n1", "n2")
    assert figures["bytes"] >= 512 * 1024 * 1024
    assert 1 <= figures["passes"] <= 10
    assert 0 < figures["blackout_ms"] <= figures["duration_ms"]
    assert figures["memory_digest"] and figures["memory_digest"] == figures["resumed_digest"]
    assert vm(cluster, "busy")["host"] == "n2"
    assert created["id"] not in {v.spec.id for v in inventory(cluster, "n1") or []}
    assert_journal_continuous(cluster, "busy", before)
    assert_runs_once(cluster, ["busy"])
    generations = {generation for _, generation in journal(cluster, vm(cluster, "busy"))}
    assert len(generations) == 2, f"expected the writes of two lease holders, got {generations}"
    remove(cluster, "busy")


def test_quick_migration_on_a_2008_cluster_and_on_request(cluster: LocalCluster) -> None:
    create(cluster, "q", "q1", storage="lun:qlun1")
    time.sleep(0.3)
    before = journal_length(cluster, "q")
    figures = migrate(cluster, "q", "--to", "q2")
    assert figures["kind"] == "quick" and figures["state"] == "completed"
    assert vm(cluster, "q")["host"] == "q2"
    assert_journal_continuous(cluster, "q", before)
    assert_runs_once(cluster, ["q"])

    create(cluster, "asked", "n1")
    before = journal_length(cluster, "asked")
    figures = migrate(cluster, "asked", "--to", "n3", "--quick")
    assert figures["kind"] == "quick" and figures["state"] == "completed"
    assert_journal_continuous(cluster, "asked", before)
    assert_runs_once(cluster, ["q", "asked"])
    remove(cluster, "q", "asked")


def test_the_destination_dying_during_the_copy_leaves_the_vm_on_the_source(cluster: LocalCluster) -> None:
    create(cluster, "stay", "n1", memory_mb=1024)
    before = journal_length(cluster, "stay")
    process = start_migration(cluster, "stay", "--to", "n2")
    wait_phase(cluster, "stay", "pre_copy")
    cluster.kill9("agent:n2")
    code, out, _ = finish(process)
    assert code == 1
    record = vm(cluster, "stay")
    assert record["host"] == "n1"
    assert_journal_continuous(cluster, "stay", before)
    assert_runs_once(cluster, ["stay"])
    cluster.ok("host", "start", "n2")
    wait_host_ok(cluster, "n2")
    assert_runs_once(cluster, ["stay"])
    remove(cluster, "stay")


def test_a_cut_migration_network_leaves_the_vm_on_the_source(cluster: LocalCluster) -> None:
    # The topology's stall timeout is the agents' too: the cut is judged after 3 s.
    for host in ("n1", "n2"):
        config = json.loads((cluster.state_dir / "agents" / f"{host}.json").read_text())
        assert config["timing"]["stall_timeout_s"] == 3
    create(cluster, "cut", "n1", memory_mb=1024)
    before = journal_length(cluster, "cut")
    # Cut before the move: on real processes a cut in the middle of the copy races the
    # copy itself. A cut mid pre-copy runs on virtual time (the scenario
    # migration-network-cut-during-pre-copy-leaves-the-vm-on-the-source) and between
    # real agents in tests/node_agent/test_agent_migration_network.py.
    cluster.ok("fault", "isolate", "n2", "--from", "migration")
    try:
        with InvariantWatch(cluster, ["n1", "n2"]) as watch:
            figures = migrate(cluster, "cut", "--to", "n2")
    finally:
        cluster.ok("fault", "heal", "n2")
    assert figures["state"] == "failed" and "did not answer" in figures["error"], figures
    assert watch.samples > 10 and watch.violations == []
    assert vm(cluster, "cut")["host"] == "n1"
    assert_journal_continuous(cluster, "cut", before)
    assert_runs_once(cluster, ["cut"])  # and no skeleton left on n2
    # Healed, the same move goes through.
    assert migrate(cluster, "cut", "--to", "n2")["state"] == "completed"
    assert_runs_once(cluster, ["cut"])
    remove(cluster, "cut")


def test_a_migration_survives_a_manager_kill(cluster: LocalCluster) -> None:
    create(cluster, "steady", "n1", memory_mb=1024)
    before = journal_length(cluster, "steady")
    process = start_migration(cluster, "steady", "--to", "n2")
    started = wait_phase(cluster, "steady", "pre_copy")
    cluster.kill9("manager")
    cluster.ok("restart", "manager")
    # The command that follows the migration waits for the manager to come back.
    code, out, err = finish(process)
    done = wait_for(
        lambda: (m := migration(cluster, started["id"]))["state"] in ("completed", "failed") and m,
        timeout=60,
        what="the migration resolved after the manager restarted",
    )
    assert code == (0 if done["state"] == "completed" else 1), err
    record = vm(cluster, "steady")
    assert record["host"] == ("n2" if done["state"] == "completed" else "n1")
    assert_journal_continuous(cluster, "steady", before)
    assert_runs_once(cluster, ["steady"])
    remove(cluster, "steady")


# (where the manager dies, source, destination, extra `vm migrate` arguments, where the
# VM must end up). The agents carry a live migration through without the manager; a
# quick migration saved but not taken over goes back to its source; one taken over
# goes on to be restored on its destination.
# Every crash point runs on virtual time (tests/scenarios/manager-dies-at-migration-*
# and live-migration-*-dies-at-*), where the runner checks where the VM ends and that
# its disk journal is unbroken; here one of them on real processes, down to the
# guest's memory.
MANAGER_CRASH_CASES = [
    ("migration-manager-blackout", "n1", "n2", (), "destination"),
]


@pytest.mark.parametrize(
    ("point", "source", "destination", "extra", "ends"),
    MANAGER_CRASH_CASES,
    ids=[case[0] for case in MANAGER_CRASH_CASES],
)
def test_the_manager_dying_at_each_step_of_a_migration(
    cluster: LocalCluster, point: str, source: str, destination: str, extra: tuple[str, ...], ends: str
) -> None:
    name = "mgr-" + point.removeprefix("migration-manager-")
    create(cluster, name, source, memory_mb=256)
    time.sleep(0.2)
    before = journal_length(cluster, name)
    pid = cluster.component("manager")["pid"]
    armed = cluster.state_dir / "manager" / "crash-at"
    cluster.ok("fault", "crash-manager-at", point)
    try:
        process = start_migration(cluster, name, "--to", destination, *extra)
        wait_for(lambda: not alive(pid), timeout=30, what=f"the manager dying at {point}")
        assert not armed.exists(), "the crash point was never reached"
    finally:
        armed.unlink(missing_ok=True)
    cluster.ok("restart", "manager")
    code, out, err = finish(process)
    figures = result_json(out)
    expected = "completed" if ends == "destination" else "failed"
    assert figures["state"] == expected, figures
    assert code == (0 if expected == "completed" else 1), err
    job = api(cluster).GetJob(manager_pb2.GetJobRequest(id=figures["job_id"]), timeout=10).job
    # The job tells what happened, not that the manager restarted under it.
    assert job.state == (
        manager_pb2.JOB_STATE_COMPLETED if expected == "completed" else manager_pb2.JOB_STATE_FAILED
    ), job
    assert "the manager restarted while this job ran" not in job.error, job.error
    if not extra and ends == "destination":
        # A live migration followed on its source across the restart keeps its figures.
        assert figures["kind"] == "live" and figures["blackout_ms"] > 0, figures
        assert figures["memory_digest"] and figures["memory_digest"] == figures["resumed_digest"], figures
        assert "followed across a manager restart" in job.message, job.message
    record = wait_runs_once(cluster, name)
    assert record["host"] == (destination if ends == "destination" else source), record
    assert record["failover_count"] == 0, record
    assert_journal_continuous(cluster, name, before)
    assert_runs_once(cluster, [name])
    remove(cluster, name)


def result_json(out: str) -> dict:
    assert out.strip(), "havm vm migrate printed nothing"
    return json.loads(out)


def wait_runs_once(cluster: LocalCluster, name: str, timeout: float = 30) -> dict:
    """Wait until the VM runs on exactly one agent and the manager records it there."""

    def settled() -> dict | None:
        record = vm(cluster, name)
        hosts = list(active_copies(cluster).get(record["id"], {}))
        return record if record["state"] == "running" and hosts == [record["host"]] else None

    return wait_for(settled, timeout=timeout, interval=0.2, what=f"{name} running on exactly one host")


# (which agent dies, at which step, where the VM must end up: "source", "destination" or
# "elsewhere" = restarted by failover on a surviving node; None = wherever, once)
CRASH_CASES = [
    ("source", "migration-source-paused", "elsewhere"),
    ("source", "migration-source-lease-moved", None),
]


@pytest.mark.parametrize(("victim", "point", "ends"), CRASH_CASES, ids=[case[1] for case in CRASH_CASES])
def test_an_agent_dying_at_each_step_of_a_live_migration(
    cluster: LocalCluster, victim: str, point: str, ends: str | None
) -> None:
    name = "crash-" + point.removeprefix("migration-")
    source, destination = "n1", "n2"
    host = source if victim == "source" else destination
    create(cluster, name, source)
    time.sleep(0.2)
    before = journal_length(cluster, name)
    armed = cluster.state_dir / "hosts" / host / "crash-at"
    pid = cluster.component(f"agent:{host}")["pid"]
    cluster.ok("fault", "crash-at", host, point)
    try:
        figures = migrate(cluster, name, "--to", destination)
        wait_for(lambda: not alive(pid), timeout=10, what=f"the agent of {host} dying at {point}")
        assert not armed.exists(), "the crash point was never reached"
    finally:
        armed.unlink(missing_ok=True)

    record = wait_runs_once(cluster, name)
    if ends == "source":
        assert figures["state"] == "failed" and record["host"] == source
    elif ends == "elsewhere":
        assert record["failover_count"] >= 1, record
    assert_journal_continuous(cluster, name, before)
    cluster.ok("host", "start", host)
    wait_host_ok(cluster, host)
    assert_runs_once(cluster, [name])
    remove(cluster, name)
