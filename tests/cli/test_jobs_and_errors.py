"""Mutating commands wait for their job; every failure is one stderr line and exit 1.

The commands run in-process against the real manager of a simulated cluster; what
needs a process of its own (no manager at all, the context file, usage errors of the
console script, its help) runs `havm` as a subprocess.
"""

from __future__ import annotations

import pytest
from havm_runner import one_error_line
from typer.testing import CliRunner

from havm.cli.main import app
from havm.ports import free_port
from havm.scenario.testing import SimClusterSession
from havm.v1 import agent_pb2

NO_ROOM = (
    "start of VM solo1 on host esx1 failed: not enough memory on esx1 to start solo1: "
    "needs 4096 MB, 3072 MB available"
)


def test_vm_create_sends_every_option_and_prints_the_vm(cluster: SimClusterSession) -> None:
    result = cluster.cli(
        "vm",
        "create",
        "app1",
        "--memory-mb",
        "1024",
        "--cpus",
        "2",
        "--disk-gb",
        "30",
        "--ha",
        "--host",
        "node1",
        "--storage",
        "csv:Volume1",
        "--network",
        "Public",
        "--network",
        "Backup",
        "--dirty-rate-mb-s",
        "12.5",
        "--journal-writes-per-s",
        "40",
        "--no-start",
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    vm = result.json()
    assert (vm["name"], vm["host"], vm["state"], vm["ha"]) == ("app1", "node1", "stopped", True)
    assert (vm["memory_mb"], vm["cpus"], vm["disk_gb"]) == (1024, 2, 30)
    assert vm["storage"] == "csv:Volume1" and vm["networks"] == ["Public", "Backup"]
    # The guest's workload reached the host the VM was created on.
    runtime = cluster.run(cluster.agent("node1").GetVm(agent_pb2.AgentServiceGetVmRequest(vm_id=vm["id"]))).vm
    assert runtime.spec.workload.dirty_rate_mb_per_s == 12.5
    assert runtime.spec.workload.journal_writes_per_s == 40


def test_vm_create_table_prints_one_line_and_the_manager_defaults_apply(cluster: SimClusterSession) -> None:
    result = cluster.cli(
        "vm", "create", "app2", "--memory-mb", "512", "--host", "esx1", "--storage", "local:local1"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "VM app2 created on esx1 (running)\n"
    vm = cluster.cli("vm", "show", "app2", "-o", "json").json()
    assert (vm["cpus"], vm["disk_gb"], vm["storage"]) == (1, 20, "local:local1")


def test_vm_create_rejects_a_malformed_storage_as_usage_error(cluster: SimClusterSession) -> None:
    result = cluster.cli("vm", "create", "app3", "--memory-mb", "512", "--storage", "nas:share")
    assert result.exit_code == 2
    assert "KIND:NAME" in result.stderr and "--storage" in result.stderr
    assert "Traceback" not in result.stderr
    assert cluster.cli("vm", "list", "-o", "json").json() == []


def test_vm_create_that_nothing_can_take(cluster: SimClusterSession) -> None:
    result = cluster.cli("vm", "create", "huge", "--ha", "--memory-mb", "100000")
    assert result.exit_code == 1 and result.stdout == ""
    line = one_error_line(result)
    assert line.startswith("error: no host can take VM huge (100000 MB, 1 vCPU, 20 GB): ")
    assert "node1 has 14336 MB free, needs 100000 MB" in line
    assert "esx1 is a standalone host (a highly available VM needs a cluster node)" in line


def test_vm_create_already_exists(cluster: SimClusterSession) -> None:
    assert cluster.cli("vm", "create", "web1", "--ha", "--memory-mb", "512").exit_code == 0
    result = cluster.cli("vm", "create", "web1", "--ha", "--memory-mb", "512")
    assert result.exit_code == 1
    assert one_error_line(result) == "error: a VM named web1 already exists"


# Each operation in an order the VM allows, what it prints, and the state it leaves.
OPERATIONS = [
    ("pause", "VM web1 paused", "paused"),
    ("resume", "VM web1 resumed", "running"),
    ("save", "VM web1 saved", "saved"),
    ("restore", "VM web1 restored on node1", "running"),
    ("stop", "VM web1 turned off", "stopped"),
    ("start", "VM web1 started on node1", "running"),
    ("shutdown", "VM web1 shut down", "stopped"),
]


def test_vm_operations_wait_for_their_job(cluster: SimClusterSession) -> None:
    assert cluster.cli("vm", "create", "web1", "--ha", "--memory-mb", "512", "--host", "node1").exit_code == 0
    for command, line, state in OPERATIONS:
        result = cluster.cli("vm", command, "web1")
        assert result.exit_code == 0, (command, result.stderr)
        assert result.stdout == line + "\n"
        # The job was finished when the command returned: the VM is there already.
        assert cluster.cli("vm", "show", "web1", "-o", "json").json()["state"] == state, command


def test_vm_operation_json_prints_the_finished_job(cluster: SimClusterSession) -> None:
    assert cluster.cli("vm", "create", "web1", "--ha", "--memory-mb", "512", "--host", "node1").exit_code == 0
    result = cluster.cli("vm", "pause", "web1", "-o", "json")
    assert result.exit_code == 0, result.stderr
    job = result.json()
    assert (job["state"], job["progress"], job["kind"], job["target"]) == (
        "completed",
        100,
        "pause_vm",
        "web1",
    )
    assert job["message"] == "VM web1 is paused on host node1" and job["error"] is None


@pytest.fixture
def no_room(cluster: SimClusterSession) -> SimClusterSession:
    """solo1 stopped on esx1, whose memory solo2 now holds: starting solo1 fails in its job."""
    for args in (("solo1", "--no-start"), ("solo2",)):
        result = cluster.cli("vm", "create", args[0], "--memory-mb", "4096", "--host", "esx1", *args[1:])
        assert result.exit_code == 0, result.stderr
    return cluster


def test_failed_job_exits_1_with_the_job_error(no_room: SimClusterSession) -> None:
    result = no_room.cli("vm", "start", "solo1")
    assert result.exit_code == 1 and result.stdout == ""
    assert one_error_line(result) == f"error: {NO_ROOM}"


def test_failed_job_in_json_mode_still_prints_the_job(no_room: SimClusterSession) -> None:
    result = no_room.cli("vm", "start", "solo1", "-o", "json")
    assert result.exit_code == 1
    job = result.json()
    assert (job["kind"], job["state"], job["error"]) == ("start_vm", "failed", NO_ROOM)
    assert one_error_line(result) == f"error: {NO_ROOM}"


def test_job_watch_follows_a_failed_job_and_a_completed_one(no_room: SimClusterSession) -> None:
    assert no_room.cli("vm", "start", "solo1").exit_code == 1
    failed, created = no_room.cli("job", "list", "--limit", "2", "-o", "json").json()
    result = no_room.cli("job", "watch", failed["id"], "-o", "json")
    assert result.exit_code == 1
    assert result.json()["id"] == failed["id"] and result.json()["state"] == "failed"
    assert one_error_line(result) == f"error: {NO_ROOM}"
    done = no_room.cli("job", "watch", created["id"])
    assert done.exit_code == 0 and "completed" in done.stdout and created["id"] in done.stdout


def test_vm_delete(cluster: SimClusterSession) -> None:
    assert cluster.cli("vm", "create", "tmp1", "--ha", "--memory-mb", "256").exit_code == 0
    refused = cluster.cli("vm", "delete", "tmp1", "--yes")
    assert refused.exit_code == 1 and one_error_line(refused) == "error: VM tmp1 is running: stop it first"
    assert cluster.cli("vm", "stop", "tmp1").exit_code == 0
    result = cluster.cli("vm", "delete", "tmp1", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "VM tmp1 deleted\n"
    assert cluster.cli("vm", "list", "-o", "json").json() == []


def test_cluster_refresh_waits_for_its_job(cluster: SimClusterSession) -> None:
    result = cluster.cli("cluster", "refresh", "hv1", "-o", "json")
    assert result.exit_code == 0, result.stderr
    job = result.json()
    assert (job["kind"], job["state"], job["target"]) == ("refresh", "completed", "hv1")
    table = cluster.cli("cluster", "refresh")
    assert table.exit_code == 0 and table.stdout == "Refreshed every host: 8 of 8 host(s) ok\n"


NOT_FOUND = [
    (("vm", "show", "nope"), "VM nope does not exist"),
    (("vm", "start", "nope"), "VM nope does not exist"),
    (("cluster", "show", "nope"), "cluster nope does not exist"),
    (("host", "show", "nope"), "host nope does not exist"),
    (("job", "watch", "job-999"), "job job-999 does not exist"),
    (("migration", "show", "mig-999"), "migration mig-999 does not exist"),
]


def test_not_found_prints_the_server_sentence(cluster: SimClusterSession) -> None:
    for args, sentence in NOT_FOUND:
        result = cluster.cli(*args)
        assert result.exit_code == 1, args
        assert one_error_line(result) == f"error: {sentence}"


def test_a_host_the_manager_cannot_reach_is_its_sentence(cluster: SimClusterSession) -> None:
    # The manager answers that a host is unavailable: not "cannot reach the manager".
    assert cluster.cli("fault", "crash", "node2").exit_code == 0
    result = cluster.cli("cluster", "refresh", "node2")
    assert result.exit_code == 1
    assert one_error_line(result) == (
        "error: refreshing host node2 failed: no host answered (node2: agent of host node2 is "
        "unavailable (failed to connect to node2.sim:50051: refused))"
    )


def test_a_slow_manager_hits_the_call_timeout(cluster: SimClusterSession) -> None:
    # node2 still beats, but its management path is cut: the manager's compatibility
    # check of the destination waits for node2's agent longer than the CLI waits.
    assert cluster.cli("vm", "create", "web1", "--ha", "--memory-mb", "512", "--host", "node1").exit_code == 0
    assert cluster.cli("fault", "isolate", "node2", "--from", "management").exit_code == 0
    started = cluster.now()
    result = cluster.cli("--timeout", "0.5", "vm", "migrate", "web1", "--to", "node2")
    assert result.exit_code == 1
    assert one_error_line(result) == (
        "error: the manager at manager.sim:50051 did not answer within 0.5 s "
        "(is the cluster running? start it with `havm up`)"
    )
    assert cluster.now() - started == pytest.approx(0.5)


def test_unreachable_manager(havm_bare) -> None:
    address = f"127.0.0.1:{free_port()}"
    for args in (("host", "list"), ("vm", "start", "web1"), ("status", "-o", "json")):
        result = havm_bare("--manager", address, *args)
        assert result.returncode == 1, args
        assert one_error_line(result) == (
            f"error: cannot reach the manager at {address} (is the cluster running? start it with `havm up`)"
        )


def test_missing_context_file_is_a_clear_sentence(havm_bare, tmp_path) -> None:
    result = havm_bare("--state-dir", str(tmp_path / "nowhere"), "vm", "list")
    assert result.returncode == 1
    line = one_error_line(result)
    assert "no running cluster found in" in line and "havm up" in line and "--manager" in line


def test_corrupt_context_file_is_a_clear_sentence(havm_bare, tmp_path) -> None:
    (tmp_path / "cluster.json").write_text("{not json")
    result = havm_bare("--state-dir", str(tmp_path), "host", "list")
    assert result.returncode == 1
    assert "cluster.json" in one_error_line(result)


def test_usage_error_exits_2_without_traceback(havm_bare) -> None:
    result = havm_bare("vm", "create", "x")  # --memory-mb is required
    assert result.returncode == 2
    assert "--memory-mb" in result.stderr and "Traceback" not in result.stderr


HELP_GROUPS = [
    (),
    ("status",),
    ("host",),
    ("host", "list"),
    ("host", "show"),
    ("cluster",),
    ("cluster", "list"),
    ("cluster", "show"),
    ("cluster", "refresh"),
    ("vm",),
    ("vm", "list"),
    ("vm", "show"),
    ("vm", "create"),
    ("vm", "start"),
    ("vm", "stop"),
    ("vm", "shutdown"),
    ("vm", "save"),
    ("vm", "restore"),
    ("vm", "pause"),
    ("vm", "resume"),
    ("vm", "delete"),
    ("vm", "set"),
    ("vm", "migrate"),
    ("vm", "migrate-storage"),
    ("migration",),
    ("migration", "list"),
    ("migration", "show"),
    ("migration", "watch"),
    ("job",),
    ("job", "list"),
    ("job", "show"),
    ("job", "watch"),
]


def test_help_of_the_console_script(havm_bare) -> None:
    result = havm_bare("--help")
    assert result.returncode == 0, result.stderr
    for group in ("status", "host", "cluster", "vm", "job", "migration"):
        assert group in result.stdout


@pytest.mark.parametrize("group", HELP_GROUPS, ids=lambda g: " ".join(g) or "havm")
def test_help_works_for_every_group(group: tuple[str, ...]) -> None:
    # In-process: the same app object the console script runs, without 25 start-ups.
    result = CliRunner().invoke(app, [*group, "--help"], prog_name="havm")
    assert result.exit_code == 0, result.output
    assert "Usage: havm" in result.output
