"""`havm vm migrate`, `vm migrate-storage`, `migration ...` and `vm set` against the real
manager of a simulated cluster (its migration network carries 100 MB/s).

Each migration really runs between the agents, on virtual time: the figures are what
the agents measured, the failures are the real ones (a guest that dirties memory faster
than the network carries it, a destination that dies during the copy).
"""

from __future__ import annotations

import pytest
from havm_runner import one_error_line

from havm.cli import render
from havm.cli.migration import summary_lines
from havm.scenario.testing import SimClusterSession
from havm.v1 import manager_pb2

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
MIB = 2**20
ARROW = "\N{RIGHTWARDS ARROW}"


def create(
    cluster: SimClusterSession, name: str, *options: str, host: str = "node1", memory: int = 256
) -> None:
    args = ("vm", "create", name, "--memory-mb", str(memory), "--host", host, *options)
    if not host.startswith("solo"):
        args += ("--ha",)
    result = cluster.cli(*args)
    assert result.exit_code == 0, result.stderr


def test_live_migration_json_and_table(cluster: SimClusterSession) -> None:
    create(cluster, "app1")
    create(cluster, "app2")
    as_json = cluster.cli("vm", "migrate", "app1", "--to", "node3", "-o", "json")
    assert as_json.exit_code == 0, as_json.stderr
    migration = as_json.json()
    assert MIGRATION_FIELDS <= set(migration)
    assert (migration["vm"], migration["kind"], migration["state"]) == ("app1", "live", "completed")
    assert (migration["source"], migration["destination"]) == ("node1", "node3")
    assert migration["passes"] >= 1 and migration["bytes"] >= 256 * MIB
    assert migration["mb_per_s"] == pytest.approx(100, rel=0.01)
    assert migration["duration_ms"] == pytest.approx(2560, rel=0.05)  # 256 MB at 100 MB/s
    assert migration["memory_digest"] == migration["resumed_digest"] is not None
    assert migration["error"] is None and migration["fell_back_to_quick"] is False
    job = cluster.cli("job", "show", migration["job_id"], "-o", "json").json()
    assert (job["kind"], job["target"], job["state"]) == ("migrate_vm", "app1", "completed")
    shown = cluster.cli("vm", "show", "app1", "-o", "json").json()
    assert (shown["host"], shown["state"], shown["migration_id"]) == ("node3", "running", None)

    as_table = cluster.cli("vm", "migrate", "app2", "--to", "node3")
    assert as_table.exit_code == 0, as_table.stderr
    moved, figures = as_table.stdout.strip().splitlines()
    assert moved == f"VM app2 live-migrated node1 {ARROW} node3"
    assert figures.startswith("live migration ") and " MB sent, 1 pass, 100 MB/s, duration 2.5" in figures
    assert figures.endswith(", blackout 0 ms")


def test_quick_migration_on_request_and_on_a_2008_cluster(cluster: SimClusterSession) -> None:
    create(cluster, "app3")
    quick = cluster.cli("vm", "migrate", "app3", "--to", "node3", "--quick", "-o", "json")
    assert quick.exit_code == 0, quick.stderr
    assert (quick.json()["kind"], quick.json()["state"], quick.json()["passes"]) == ("quick", "completed", 0)
    create(cluster, "q", "--storage", "lun:qlun1", host="q1", memory=128)
    offered = cluster.cli("vm", "migrate", "q", "--to", "q2")
    assert offered.exit_code == 0, offered.stderr
    moved, figures = offered.stdout.strip().splitlines()
    assert moved == f"VM q quick-migrated q1 {ARROW} q2"
    assert figures.startswith("quick migration ") and "MB sent" not in figures and "pass" not in figures


def test_a_guest_too_busy_to_converge_falls_back_to_quick(cluster: SimClusterSession) -> None:
    create(cluster, "busy1", "--dirty-rate-mb-s", "1000", memory=32)
    fell_back = cluster.cli("vm", "migrate", "busy1", "--to", "node3", "--if-no-converge", "quick")
    assert fell_back.exit_code == 0, fell_back.stderr
    assert fell_back.stdout.splitlines()[0] == (
        f"VM busy1 moved node1 {ARROW} node3: live migration did not converge, fell back to quick migration"
    )
    assert " passes, 100 MB/s" in fell_back.stdout.splitlines()[1]
    assert cluster.cli("vm", "show", "busy1", "-o", "json").json()["host"] == "node3"


def test_detach_then_watch(cluster: SimClusterSession) -> None:
    create(cluster, "app4")
    detached = cluster.cli("vm", "migrate", "app4", "--to", "node3", "--detach", "-o", "json")
    assert detached.exit_code == 0, detached.stderr
    assert detached.json()["state"] == "queued"
    shown = cluster.cli("vm", "show", "app4", "-o", "json").json()
    assert shown["migration_id"] == detached.json()["id"] and shown["processor_compatibility"] is False
    watched = cluster.cli("migration", "watch", detached.json()["id"], "-o", "json")
    assert watched.exit_code == 0 and watched.json()["state"] == "completed"
    assert cluster.cli("vm", "show", "app4", "-o", "json").json()["host"] == "node3"


def test_failed_and_refused_migrations_exit_1_with_the_sentence(cluster: SimClusterSession) -> None:
    create(cluster, "busy2", "--dirty-rate-mb-s", "1000", memory=32)
    failed = cluster.cli("vm", "migrate", "busy2", "--to", "node3", "--if-no-converge", "fail")
    assert failed.exit_code == 1 and failed.stdout == ""
    line = one_error_line(failed)
    assert line.startswith("error: did not converge: ") and " MB still dirty after " in line
    assert line.endswith("(live migration of VM busy2); VM busy2 keeps running on host node1")
    assert cluster.cli("vm", "show", "busy2", "-o", "json").json()["host"] == "node1"

    create(cluster, "doomed1", memory=128)
    assert cluster.cli("fault", "crash-at", "node2", "migration-destination-copying").exit_code == 0
    failed_json = cluster.cli("vm", "migrate", "doomed1", "--to", "node2", "-o", "json")
    assert failed_json.exit_code == 1
    error = (
        "agent of host node1 is unavailable (host node2 (node2.sim:50051) went away: Connection reset "
        "by peer; VM doomed1 keeps running on host node1)"
    )
    assert failed_json.json()["state"] == "failed" and failed_json.json()["error"] == error
    assert one_error_line(failed_json) == f"error: {error}"
    doomed = cluster.cli("vm", "show", "doomed1", "-o", "json").json()
    assert (doomed["host"], doomed["state"]) == ("node1", "running")

    refused = cluster.cli("vm", "migrate", "doomed1", "--to", "esx1")
    assert refused.exit_code == 1
    assert one_error_line(refused) == (
        "error: VM doomed1 is running: a move to esx1 crosses the cluster boundary, which a VM does "
        "stopped or saved (`havm vm save doomed1` keeps its memory)"
    )
    fenced = cluster.cli("vm", "migrate", "doomed1", "--to", "node2")
    assert fenced.exit_code == 1 and one_error_line(fenced) == (
        "error: VM doomed1 cannot move: destination host node2 is fenced (its VMs were taken away; "
        "it rejoins once it answers again)"
    )
    gone = cluster.cli("vm", "migrate", "doomed1", "--to", "node9")
    assert gone.exit_code == 1 and one_error_line(gone) == "error: host node9 does not exist"


# --to, then the destination and storage the manager recorded (None: its own choice).
STORAGE_TARGETS = [
    ("files1", "node3:Volume2", "node3", {"kind": "csv", "name": "Volume2"}),
    ("files1", "node3:lun:Data", "node3", {"kind": "lun", "name": "Data"}),
    ("files1", "node1", "node1", None),
    ("local1", "solo1:local:data", "solo1", {"kind": "local", "name": "Data"}),
    ("local1", "solo2:c", "solo2", {"kind": "local", "name": "C"}),
]


def test_storage_target_parsing(cluster: SimClusterSession) -> None:
    create(cluster, "files1", "--storage", "csv:Volume1", memory=128)
    create(cluster, "local1", "--storage", "local:C", host="solo1", memory=128)
    for vm, target, host, storage in STORAGE_TARGETS:
        result = cluster.cli("vm", "migrate-storage", vm, "--to", target, "--detach")
        assert result.exit_code == 0, (target, result.stderr)
        assert f"of VM {vm} " in result.stdout and "follow it with `havm migration watch " in result.stdout
        migration_id = result.stdout.rsplit("watch ", 1)[1].rstrip("`\n")
        done = cluster.cli("migration", "watch", migration_id, "-o", "json")
        assert done.exit_code == 0, (target, done.stderr)
        moved = done.json()
        assert (moved["kind"], moved["state"], moved["destination"]) == ("storage", "completed", host), target
        if storage is not None:
            assert moved["storage"] == storage, target
        else:
            assert moved["storage"]["kind"] == "csv", target  # node1 does not see the LUN


def test_storage_migration_follows_and_bad_targets_are_named(cluster: SimClusterSession) -> None:
    create(cluster, "files2", "--storage", "csv:Volume1", memory=128)
    create(cluster, "local2", "--storage", "local:C", host="solo1", memory=128)
    moved = cluster.cli("vm", "migrate-storage", "local2", "--to", "solo1:Data", "-o", "json")
    assert moved.exit_code == 0, moved.stderr
    migration = moved.json()
    assert (migration["kind"], migration["state"], migration["destination"]) == (
        "storage",
        "completed",
        "solo1",
    )
    assert migration["storage"] == {"kind": "local", "name": "Data"}
    assert cluster.cli("vm", "show", "local2", "-o", "json").json()["storage"] == "local:Data"

    unknown = cluster.cli("vm", "migrate-storage", "files2", "--to", "node3:Volume9")
    assert unknown.exit_code == 1
    assert one_error_line(unknown) == (
        "error: host node3 has no local disk, CSV volume or LUN named Volume9 (it has: local disk C, "
        "local disk Data, CSV volume Volume1, CSV volume Volume2, LUN Data)"
    )
    ambiguous = cluster.cli("vm", "migrate-storage", "files2", "--to", "node3:Data")
    assert ambiguous.exit_code == 1
    assert "write local:Data or lun:Data" in one_error_line(ambiguous)
    same_host = cluster.cli("vm", "migrate-storage", "files2", "--to", "node1")
    assert same_host.exit_code == 1 and "VM files2 is already on node1" in one_error_line(same_host)
    malformed = cluster.cli("vm", "migrate-storage", "files2", "--to", ":Volume2")
    assert (
        malformed.exit_code == 2 and "HOST:PATH" in malformed.stderr and "Traceback" not in malformed.stderr
    )
    # None of the refused targets reached the manager.
    assert [m["vm"] for m in cluster.cli("migration", "list", "-o", "json").json()] == ["local2"]


def test_migration_list_and_show(cluster: SimClusterSession) -> None:
    create(cluster, "app5")
    create(cluster, "app6", "--storage", "csv:Volume1", memory=128)
    assert cluster.cli("vm", "migrate", "app5", "--to", "node3").exit_code == 0
    assert cluster.cli("vm", "migrate-storage", "app6", "--to", "node3:Volume2").exit_code == 0
    listed = cluster.cli("migration", "list", "-o", "json")
    assert listed.exit_code == 0, listed.stderr
    migrations = listed.json()
    assert [m["vm"] for m in migrations] == ["app6", "app5"]  # newest first
    assert all(MIGRATION_FIELDS <= set(m) for m in migrations)
    table = cluster.cli("migration", "list")
    assert table.exit_code == 0, table.stderr
    for word in ("ID", f"SOURCE {ARROW} DESTINATION", "BLACKOUT MS", f"node1 {ARROW} node3", "csv:Volume2"):
        assert word in table.stdout, word
    storage = migrations[0]
    shown = cluster.cli("migration", "show", storage["id"], "-o", "json")
    assert shown.exit_code == 0 and shown.json()["id"] == storage["id"]
    shown_table = cluster.cli("migration", "show", storage["id"])
    assert shown_table.exit_code == 0 and "csv:Volume2" in shown_table.stdout
    limited = cluster.cli("migration", "list", "--limit", "1", "-o", "json")
    assert [m["id"] for m in limited.json()] == [storage["id"]]


def test_processor_compatibility_setting(cluster: SimClusterSession) -> None:
    create(cluster, "off1", "--no-start", memory=128)
    create(cluster, "web1", memory=128)
    switched_on = cluster.cli("vm", "set", "off1", "--processor-compatibility")
    assert switched_on.exit_code == 0, switched_on.stderr
    assert switched_on.stdout == "VM off1: processor compatibility on\n"
    assert cluster.cli("vm", "show", "off1", "-o", "json").json()["processor_compatibility"] is True
    running = cluster.cli("vm", "set", "web1", "--no-processor-compatibility")
    assert running.exit_code == 1
    assert one_error_line(running) == (
        "error: VM web1 is running: processor compatibility can be changed only while the VM is stopped "
        "(shut it down first)"
    )
    nothing = cluster.cli("vm", "set", "off1")
    assert nothing.exit_code == 2 and "nothing to change" in nothing.stderr
    created = cluster.cli(
        "vm", "create", "compat1", "--ha", "--memory-mb", "512", "--processor-compatibility", "-o", "json"
    )
    assert created.exit_code == 0, created.stderr
    assert created.json()["processor_compatibility"] is True


def test_quick_migration_figures_show_no_zero_copy_figures() -> None:
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
        f"VM db1 quick-migrated node1 {ARROW} node2",
        "quick migration mig-7: duration 3.21 s, blackout 3,150 ms",
    ]


def test_following_survives_a_manager_restart(cluster: SimClusterSession) -> None:
    """The manager finds its migrations again after a restart; the command waits for it."""
    create(cluster, "web1", memory=512)  # 5 s of copy at 100 MB/s
    following = cluster.begin("vm", "migrate", "web1", "--to", "node3", "-o", "json")
    cluster.advance(2)
    assert not following.done()
    assert cluster.cli("fault", "crash-manager").exit_code == 0
    cluster.advance(0.5)  # polls find no manager (each waits a second for it, on the wall clock)
    assert not following.done()
    assert cluster.cli("restart", "manager").exit_code == 0
    result = cluster.wait(following)
    assert result.exit_code == 0, result.stderr
    assert result.json()["state"] == "completed" and result.json()["destination"] == "node3"
    assert result.stderr == ""
    assert cluster.cli("vm", "show", "web1", "-o", "json").json()["host"] == "node3"
