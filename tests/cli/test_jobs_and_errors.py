"""Mutating commands wait for their job; every failure is one stderr line and exit 1."""

from __future__ import annotations

import pytest
from fake_manager_service import FAILED_START_ERROR
from havm_runner import run_many
from typer.testing import CliRunner

from havm.cli.main import app
from havm.ports import free_port
from havm.v1 import agent_pb2, common_pb2


def _one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert lines[0].startswith("error: ")
    return lines[0]


def test_vm_create_sends_every_option_and_prints_the_vm(havm, manager):
    result = havm(
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
    assert result.returncode == 0, result.stderr
    vm = result.json()
    assert vm["name"] == "app1" and vm["host"] == "node1" and vm["state"] == "stopped"
    assert vm["storage"] == "csv:Volume1" and vm["networks"] == ["Public", "Backup"] and vm["ha"] is True
    request = [r for name, r in manager.fake.calls if name == "CreateVm" and r.name == "app1"][-1]
    assert (request.memory_mb, request.cpus, request.disk_gb) == (1024, 2, 30)
    assert request.highly_available and request.no_start and request.host == "node1"
    assert request.storage == common_pb2.StorageLocation(kind=common_pb2.STORAGE_KIND_CSV, name="Volume1")
    assert request.workload.dirty_rate_mb_per_s == 12.5 and request.workload.journal_writes_per_s == 40


def test_vm_create_table_prints_one_line(havm, manager):
    result = havm("vm", "create", "app2", "--memory-mb", "512", "--storage", "local:C")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "VM app2 created on node1 (running)"
    request = [r for name, r in manager.fake.calls if name == "CreateVm" and r.name == "app2"][-1]
    assert request.cpus == 0 and request.disk_gb == 0  # the manager's defaults apply
    assert request.storage.kind == common_pb2.STORAGE_KIND_LOCAL_DISK


def test_vm_create_rejects_a_malformed_storage_as_usage_error(havm):
    result = havm("vm", "create", "app3", "--memory-mb", "512", "--storage", "nas:share")
    assert result.returncode == 2
    assert "KIND:NAME" in result.stderr and "--storage" in result.stderr
    assert "Traceback" not in result.stderr


def test_vm_create_that_fails_in_its_job(havm):
    result = havm("vm", "create", "huge", "--memory-mb", "100000")
    assert result.returncode == 1
    assert _one_error_line(result) == "error: no host has 100000 MB free for VM huge"


def test_vm_create_already_exists(havm):
    result = havm("vm", "create", "web1", "--memory-mb", "512")
    assert result.returncode == 1
    assert _one_error_line(result) == "error: a VM named web1 already exists"


OPERATIONS = [
    ("start", agent_pb2.VM_OPERATION_START, "VM web1 started on node1"),
    ("stop", agent_pb2.VM_OPERATION_TURN_OFF, "VM web1 turned off"),
    ("shutdown", agent_pb2.VM_OPERATION_SHUTDOWN, "VM web1 shut down"),
    ("save", agent_pb2.VM_OPERATION_SAVE, "VM web1 saved"),
    ("restore", agent_pb2.VM_OPERATION_RESTORE, "VM web1 restored on node1"),
    ("pause", agent_pb2.VM_OPERATION_PAUSE, "VM web1 paused"),
    ("resume", agent_pb2.VM_OPERATION_RESUME, "VM web1 resumed"),
]


def test_vm_operations_wait_for_their_job(havm, manager):
    before = len(manager.fake.calls)
    results = run_many(havm, [("vm", command, "web1") for command, _, _ in OPERATIONS])
    for (command, _, line), result in zip(OPERATIONS, results, strict=True):
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.strip() == line
    sent = {(r.name, r.operation) for name, r in manager.fake.calls[before:] if name == "OperateVm"}
    assert sent == {("web1", operation) for _, operation, _ in OPERATIONS}


def test_vm_operation_json_prints_the_finished_job(havm):
    result = havm("vm", "pause", "web1", "-o", "json")
    assert result.returncode == 0, result.stderr
    job = result.json()
    assert job["state"] == "completed" and job["progress"] == 100 and job["kind"] == "pause_vm"


def test_failed_job_exits_1_with_the_job_error(havm):
    result = havm("vm", "start", "db1")
    assert result.returncode == 1
    assert _one_error_line(result) == f"error: {FAILED_START_ERROR}"
    assert result.stdout == ""


def test_failed_job_in_json_mode_still_prints_the_job(havm):
    result = havm("vm", "start", "db1", "-o", "json")
    assert result.returncode == 1
    assert result.json()["state"] == "failed" and result.json()["error"] == FAILED_START_ERROR
    assert _one_error_line(result) == f"error: {FAILED_START_ERROR}"


def test_vm_delete_without_a_tty_needs_no_prompt(havm, manager):
    created = havm("vm", "create", "tmp1", "--memory-mb", "256", "-o", "json")
    assert created.returncode == 0, created.stderr
    result = havm("vm", "delete", "tmp1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "VM tmp1 deleted"
    assert "tmp1" not in manager.fake.vms


def test_cluster_refresh_waits_for_its_job(havm):
    result = havm("cluster", "refresh", "hv1", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert result.json()["state"] == "completed" and result.json()["target"] == "hv1"
    table = havm("cluster", "refresh")
    assert table.returncode == 0 and table.stdout.strip() == "refreshed 2 hosts"


def test_job_watch_follows_a_failed_job(havm):
    result = havm("job", "watch", "job-2", "-o", "json")
    assert result.returncode == 1
    assert result.json()["id"] == "job-2"
    assert _one_error_line(result) == f"error: {FAILED_START_ERROR}"
    done = havm("job", "watch", "job-1")
    assert done.returncode == 0 and "completed" in done.stdout


NOT_FOUND = [
    (("vm", "show", "nope"), "VM nope does not exist"),
    (("vm", "start", "nope"), "VM nope does not exist"),
    (("cluster", "show", "nope"), "cluster nope does not exist"),
    (("job", "watch", "job-999"), "job job-999 does not exist"),
]


def test_not_found_prints_the_server_sentence(havm):
    results = run_many(havm, [args for args, _ in NOT_FOUND])
    for (args, sentence), result in zip(NOT_FOUND, results, strict=True):
        assert result.returncode == 1, args
        assert _one_error_line(result) == f"error: {sentence}"


def test_unavailable_from_a_reachable_manager_is_its_sentence(havm):
    # The manager answers UNAVAILABLE because a host is down: not "cannot reach".
    result = havm("cluster", "refresh", "node2")
    assert result.returncode == 1
    assert _one_error_line(result) == "error: host node2 does not answer at 127.0.0.1:7002"


def test_unreachable_manager(havm_bare):
    address = f"127.0.0.1:{free_port()}"
    commands = [("host", "list"), ("vm", "start", "web1"), ("status", "-o", "json")]
    results = run_many(havm_bare, [("--manager", address, *args) for args in commands])
    for args, result in zip(commands, results, strict=True):
        assert result.returncode == 1, args
        assert _one_error_line(result) == (
            f"error: cannot reach the manager at {address} (is the cluster running? start it with `havm up`)"
        )


def test_a_slow_manager_hits_the_call_timeout(havm):
    result = havm("--timeout", "0.2", "host", "show", "sleepy")
    assert result.returncode == 1
    line = _one_error_line(result)
    assert "did not answer within 0.2 s" in line and "havm up" in line


def test_manager_address_from_the_environment(havm_bare, manager):
    result = havm_bare("vm", "list", "-o", "json", env={"HAVM_MANAGER": manager.address})
    assert result.returncode == 0, result.stderr


def test_missing_context_file_is_a_clear_sentence(havm_bare, tmp_path):
    result = havm_bare("--state-dir", str(tmp_path / "nowhere"), "vm", "list")
    assert result.returncode == 1
    line = _one_error_line(result)
    assert "no running cluster found in" in line and "havm up" in line and "--manager" in line


def test_corrupt_context_file_is_a_clear_sentence(havm_bare, tmp_path):
    (tmp_path / "cluster.json").write_text("{not json")
    result = havm_bare("--state-dir", str(tmp_path), "host", "list")
    assert result.returncode == 1
    assert "cluster.json" in _one_error_line(result)


def test_usage_error_exits_2_without_traceback(havm_bare):
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


def test_help_of_the_console_script(havm_bare):
    result = havm_bare("--help")
    assert result.returncode == 0, result.stderr
    for group in ("status", "host", "cluster", "vm", "job", "migration"):
        assert group in result.stdout


@pytest.mark.parametrize("group", HELP_GROUPS, ids=lambda g: " ".join(g) or "havm")
def test_help_works_for_every_group(group):
    # In-process: the same app object the console script runs, without 25 start-ups.
    result = CliRunner().invoke(app, [*group, "--help"], prog_name="havm")
    assert result.exit_code == 0, result.output
    assert "Usage: havm" in result.output
