"""`havm vm migrate`, `vm migrate-storage`, `migration ...` and `vm set` against the fake manager.

The fake scripts each migration (one step per GetMigration), so these tests check what
the command sends, how it follows the record to its end and what it prints, not timing.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time

import pytest
from fake_manager_service import canned_migration_hosts, serve, start_fake_manager
from havm_runner import run_many

from havm.cli import render
from havm.cli.migration import summary_lines
from havm.v1 import common_pb2, manager_pb2

MIGRATION_FIELDS = {
    "id",
    "vm",
    "kind",
    "state",
    "source",
    "destination",
    "storage",
    "bytes",
    "passes",
    "duration_ms",
    "blackout_ms",
    "mb_per_s",
    "fell_back_to_quick",
    "memory_digest",
    "resumed_digest",
    "error",
    "job_id",
}


@pytest.fixture(scope="module", autouse=True)
def migration_cluster(manager):
    """node3 (a healthy node of hv1 with disks, CSVs and a LUN) and one VM per scenario on node1."""
    fake = manager.fake
    for host in canned_migration_hosts():
        fake.hosts[host.name] = host
    template = fake.vms["web1"]
    names = [
        "app1",
        "app2",
        "app3",
        "app4",
        "app5",
        "app6",
        "busy1",
        "busy2",
        "doomed1",
        "files1",
        "files2",
        "off1",
    ]
    for number, name in enumerate(names, start=10):
        vm = manager_pb2.Vm()
        vm.CopyFrom(template)
        vm.id, vm.name, vm.memory_mb = f"vm-{number}", name, 1024
        if name == "off1":
            vm.state = common_pb2.VM_STATE_STOPPED
        fake.vms[name] = vm


def _one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert lines[0].startswith("error: ")
    return lines[0]


def _sent(manager, method: str, vm: str):
    return [r for name, r in manager.fake.calls if name == method and r.name == vm][-1]


def test_live_migration_json_and_table(havm, manager):
    as_json, as_table = run_many(
        havm,
        [
            ("vm", "migrate", "app1", "--to", "node3", "-o", "json"),
            ("vm", "migrate", "app2", "--to", "node3"),
        ],
    )
    assert as_json.returncode == 0, as_json.stderr
    migration = as_json.json()
    assert MIGRATION_FIELDS <= set(migration)
    assert (migration["vm"], migration["kind"], migration["state"]) == ("app1", "live", "completed")
    assert (migration["source"], migration["destination"]) == ("node1", "node3")
    assert migration["storage"] == {"kind": "csv", "name": "Volume1"}
    assert migration["passes"] == 3 and migration["bytes"] == 1024 * 2**20 * 19 // 16
    assert migration["duration_ms"] == 5230 and migration["blackout_ms"] == 38 and migration["mb_per_s"] > 0
    assert migration["memory_digest"] == migration["resumed_digest"] is not None
    assert migration["error"] is None and migration["fell_back_to_quick"] is False
    assert migration["job_id"].startswith("job-")
    request = _sent(manager, "MigrateVm", "app1")
    assert request.host == "node3" and not request.quick
    assert request.no_converge == manager_pb2.NO_CONVERGE_POLICY_UNSPECIFIED

    assert as_table.returncode == 0, as_table.stderr
    moved, figures = as_table.stdout.strip().splitlines()
    assert moved == "VM app2 live-migrated node1 \N{RIGHTWARDS ARROW} node3"
    assert figures.startswith("live migration mig-") and "1,216.0 MB sent, 3 passes" in figures
    assert "duration 5.23 s, blackout 38 ms" in figures


def test_quick_and_fallback_and_detach(havm, manager):
    quick, fell_back, detached = run_many(
        havm,
        [
            ("vm", "migrate", "app3", "--to", "node3", "--quick", "-o", "json"),
            ("vm", "migrate", "busy1", "--to", "node3", "--if-no-converge", "quick"),
            ("vm", "migrate", "app4", "--to", "node3", "--detach", "-o", "json"),
        ],
    )
    assert quick.returncode == 0, quick.stderr
    assert quick.json()["kind"] == "quick" and quick.json()["blackout_ms"] == 3150
    assert _sent(manager, "MigrateVm", "app3").quick

    assert fell_back.returncode == 0, fell_back.stderr
    assert "fell back to quick migration" in fell_back.stdout
    assert _sent(manager, "MigrateVm", "busy1").no_converge == manager_pb2.NO_CONVERGE_POLICY_QUICK

    assert detached.returncode == 0, detached.stderr
    assert detached.json()["state"] == "queued"
    shown = havm("vm", "show", "app4", "-o", "json").json()
    assert shown["migration_id"] == detached.json()["id"] and shown["processor_compatibility"] is False
    watched = havm("migration", "watch", detached.json()["id"], "-o", "json")
    assert watched.returncode == 0 and watched.json()["state"] == "completed"


def test_failed_and_refused_migrations_exit_1_with_the_sentence(havm, manager):
    failed, failed_json, refused, gone = run_many(
        havm,
        [
            ("vm", "migrate", "busy2", "--to", "node3", "--if-no-converge", "fail"),
            ("vm", "migrate", "doomed1", "--to", "node3", "-o", "json"),
            ("vm", "migrate", "web1", "--to", "esx1"),
            ("vm", "migrate", "web1", "--to", "node9"),
        ],
    )
    assert failed.returncode == 1 and failed.stdout == ""
    assert "did not converge after 10 passes" in _one_error_line(failed)
    assert _sent(manager, "MigrateVm", "busy2").no_converge == manager_pb2.NO_CONVERGE_POLICY_FAIL

    assert failed_json.returncode == 1
    error = "host node3 stopped answering during the memory copy; VM doomed1 keeps running on node1"
    assert failed_json.json()["state"] == "failed" and failed_json.json()["error"] == error
    assert _one_error_line(failed_json) == f"error: {error}"

    assert refused.returncode == 1
    assert _one_error_line(refused) == (
        "error: host esx1 cannot take VM web1: its processor is AuthenticAMD, the VM runs on GenuineIntel; "
        "it has no virtual network or port group Public; it cannot see CSV Volume1"
    )
    assert gone.returncode == 1 and _one_error_line(gone) == "error: host node9 does not exist"


def test_progress_bar_shows_pass_rate_and_what_remains(manager, tmp_path):
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVM_")}
    try:
        command = [sys.executable, "-m", "havm.cli.main", "--manager", manager.address]
        completed = subprocess.run(
            [*command, "vm", "migrate", "app5", "--to", "node3"],
            cwd=tmp_path,
            env={**env, "COLUMNS": "160"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=secondary,
            text=True,
            timeout=30,
        )
        os.close(secondary)
        secondary = -1
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO once the other side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        terminal = b"".join(chunks).decode(errors="replace")
    finally:
        if secondary != -1:
            os.close(secondary)
        os.close(primary)
    assert completed.returncode == 0, terminal
    assert completed.stdout.startswith("VM app5 live-migrated")  # the bar stays off stdout
    for text in ("live migration of app5", "pass 2", "415 MB/s", "MB left", "%"):
        assert text in terminal, text


STORAGE_TARGETS = [
    # --to, the storage sent (kind, name) or None, the destination host sent
    ("node3:Volume2", (common_pb2.STORAGE_KIND_CSV, "Volume2"), "node3"),
    ("node3:lun:Data", (common_pb2.STORAGE_KIND_LUN, "Data"), "node3"),
    ("node3:local:data", (common_pb2.STORAGE_KIND_LOCAL_DISK, "Data"), "node3"),
    ("node1:c", (common_pb2.STORAGE_KIND_LOCAL_DISK, "C"), "node1"),
    ("node3", None, "node3"),
]


def test_storage_target_parsing(havm, manager):
    results = run_many(
        havm,
        [("vm", "migrate-storage", "files1", "--to", target, "--detach") for target, _, _ in STORAGE_TARGETS],
    )
    sent = [r for name, r in manager.fake.calls if name == "MigrateVmStorage" and r.name == "files1"]
    by_host_and_storage = {(r.host, r.storage.kind, r.storage.name) for r in sent}
    for (target, storage, host), result in zip(STORAGE_TARGETS, results, strict=True):
        assert result.returncode == 0, (target, result.stderr)
        assert "follow it with `havm migration watch mig-" in result.stdout
        kind, name = storage or (common_pb2.STORAGE_KIND_UNSPECIFIED, "")
        assert (host, kind, name) in by_host_and_storage, target


def test_storage_migration_follows_and_bad_targets_are_named(havm, manager):
    moved, unknown, ambiguous, same_host, malformed = run_many(
        havm,
        [
            ("vm", "migrate-storage", "files2", "--to", "node1:C", "-o", "json"),
            ("vm", "migrate-storage", "files2", "--to", "node3:Volume9"),
            ("vm", "migrate-storage", "files2", "--to", "node3:Data"),
            ("vm", "migrate-storage", "files2", "--to", "node1"),
            ("vm", "migrate-storage", "files2", "--to", ":Volume2"),
        ],
    )
    assert moved.returncode == 0, moved.stderr
    migration = moved.json()
    assert (migration["kind"], migration["state"], migration["passes"]) == ("storage", "completed", 2)
    assert migration["storage"] == {"kind": "local", "name": "C"} and migration["destination"] == "node1"

    assert unknown.returncode == 1
    assert _one_error_line(unknown) == (
        "error: host node3 has no local disk, CSV volume or LUN named Volume9 (it has: local disk C, "
        "local disk Data, CSV volume Volume1, CSV volume Volume2, LUN Data)"
    )
    assert ambiguous.returncode == 1
    assert "write local:Data or lun:Data" in _one_error_line(ambiguous)
    assert same_host.returncode == 1 and "VM files2 is already on node1" in _one_error_line(same_host)
    assert (
        malformed.returncode == 2 and "HOST:PATH" in malformed.stderr and "Traceback" not in malformed.stderr
    )
    assert (
        len([r for name, r in manager.fake.calls if name == "MigrateVmStorage" and r.name == "files2"]) == 1
    )


def test_migration_list_and_show(havm):
    assert havm("vm", "migrate", "app6", "--to", "node3", "--detach").returncode == 0
    listed, table, shown, shown_table, missing = run_many(
        havm,
        [
            ("migration", "list", "-o", "json"),
            ("migration", "list"),
            ("migration", "show", "mig-1", "-o", "json"),
            ("migration", "show", "mig-1"),
            ("migration", "show", "mig-999"),
        ],
    )
    assert listed.returncode == 0, listed.stderr
    migrations = listed.json()
    assert migrations and all(MIGRATION_FIELDS <= set(m) for m in migrations)
    ids = [int(m["id"].split("-")[1]) for m in migrations]
    assert ids == sorted(ids, reverse=True)
    assert table.returncode == 0, table.stderr
    for word in (
        "ID",
        "SOURCE \N{RIGHTWARDS ARROW} DESTINATION",
        "BLACKOUT MS",
        "node1 \N{RIGHTWARDS ARROW} node3",
    ):
        assert word in table.stdout, word
    assert shown.returncode == 0 and shown.json()["id"] == "mig-1"
    assert shown_table.returncode == 0 and "csv:Volume1" in shown_table.stdout
    assert missing.returncode == 1 and _one_error_line(missing) == "error: migration mig-999 does not exist"


def test_processor_compatibility_setting(havm, manager):
    switched_on, running, nothing, created = run_many(
        havm,
        [
            ("vm", "set", "off1", "--processor-compatibility"),
            ("vm", "set", "web1", "--no-processor-compatibility"),
            ("vm", "set", "off1"),
            ("vm", "create", "compat1", "--memory-mb", "512", "--processor-compatibility", "-o", "json"),
        ],
    )
    assert switched_on.returncode == 0, switched_on.stderr
    assert switched_on.stdout.strip() == "VM off1: processor compatibility on"
    assert _sent(manager, "UpdateVm", "off1").processor_compatibility is True
    assert running.returncode == 1
    assert _one_error_line(running) == (
        "error: processor compatibility of VM web1 can change only while it is stopped (it is running)"
    )
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
    assert created.returncode == 0, created.stderr
    assert created.json()["processor_compatibility"] is True
    assert _sent(manager, "CreateVm", "compat1").processor_compatibility
    refused = _sent(manager, "UpdateVm", "web1")
    assert refused.HasField("processor_compatibility") and refused.processor_compatibility is False


def test_quick_migration_figures_show_no_zero_copy_figures():
    quick = manager_pb2.Migration(
        id="mig-7",
        vm="db1",
        kind=manager_pb2.MIGRATION_KIND_QUICK,
        state=manager_pb2.MIGRATION_STATE_COMPLETED,
        source="node1",
        destination="node2",
        duration_ms=3210,
        blackout_ms=3150,
    )
    assert summary_lines(render.migration_dict(quick)) == [
        "VM db1 quick-migrated node1 \N{RIGHTWARDS ARROW} node2",
        "quick migration mig-7: duration 3.21 s, blackout 3,150 ms",
    ]


def test_following_survives_a_manager_restart(tmp_path):
    """The manager finds its migrations again after a restart; the command waits for it."""
    server, fake, port = start_fake_manager()
    for host in canned_migration_hosts():
        fake.hosts[host.name] = host
    command = [sys.executable, "-m", "havm.cli.main", "--manager", f"127.0.0.1:{port}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVM_")}
    process = subprocess.Popen(
        [*command, "vm", "migrate", "web1", "--to", "node3", "-o", "json"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not fake.migrations:
            assert time.monotonic() < deadline and process.poll() is None, "the migration never started"
            time.sleep(0.02)
        server.stop(grace=None)
        time.sleep(1.5)  # several polls find no manager
        server, _ = serve(fake, port)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        server.stop(grace=None)
    assert process.returncode == 0, stderr
    assert json.loads(stdout)["state"] == "completed"
    assert stderr == ""
