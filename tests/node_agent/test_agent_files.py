"""The lease file on shared storage: written atomically, re-read only when it changed, swapped
under a lock that every agent sharing the storage takes; and what recovery makes of it."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from agent_testkit import host_config

from node_agent.adapters.files import (
    VM_DISK,
    HostFiles,
    LeaseWatch,
    RegistryEntry,
    read_lease_file,
    spec_to_json,
    write_atomically,
)
from node_agent.app.ownership import load_registered
from node_agent.core.config import parse_host_config
from node_agent.core.errors import FailedPrecondition, StorageFault
from node_agent.core.lease import Lease, take_over_lease
from node_agent.core.power import PowerState
from node_agent.core.vm import StorageKind, StorageRef, VmSpec


def test_the_watch_reads_again_only_when_the_file_changed(tmp_path: Path) -> None:
    path = tmp_path / "lease.json"
    watch = LeaseWatch(path)
    assert watch.current() is None
    write_atomically(path, b'{"generation": 1, "owner": "node1"}')
    assert watch.current() == Lease(1, "node1")

    # Changed in place with the same inode, size and mtime: the cached lease stays,
    # which shows that an unchanged stamp costs no read.
    before = os.stat(path)
    with open(path, "r+b") as f:
        f.write(b'{"generation": 9, "owner": "node9"}')
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert watch.current() == Lease(1, "node1")

    # Every real lease write is a rename: a new inode, so it is seen at once.
    write_atomically(path, b'{"generation": 2, "owner": "node2"}')
    assert watch.current() == Lease(2, "node2")
    path.unlink()
    assert watch.current() is None


def test_an_unreadable_lease_is_a_storage_fault(tmp_path: Path) -> None:
    path = tmp_path / "lease.json"
    path.write_text("{not json")
    with pytest.raises(StorageFault) as caught:
        read_lease_file(path)
    assert str(path) in caught.value.message


def test_lease_swaps_are_serialised_across_writers(tmp_path: Path) -> None:
    """Four hosts take a VM over with the same generation at once: exactly one wins."""
    config = parse_host_config(host_config(tmp_path))
    files = HostFiles(config, tmp_path / "state")
    vm_dir = tmp_path / "vm"
    files.write_lease(vm_dir, Lease(1, "node1"))

    def take_over(host: str) -> str:
        def decide(on_storage: Lease | None) -> Lease:
            time.sleep(0.02)  # wide enough for every reader to meet the old lease without a lock
            return take_over_lease("web1", host, 2, on_storage)

        try:
            files.swap_lease(vm_dir, decide)
        except FailedPrecondition:
            return "refused"
        return "took it"

    hosts = [f"node{n}" for n in range(2, 6)]
    with ThreadPoolExecutor(len(hosts)) as pool:
        outcomes = list(pool.map(take_over, hosts))

    assert sorted(outcomes) == ["refused"] * 3 + ["took it"]
    assert files.read_lease(vm_dir) == Lease(2, hosts[outcomes.index("took it")])


def test_a_registered_vm_whose_lease_names_this_host_is_kept(tmp_path: Path) -> None:
    """An agent that died right after a live migration's commit, before rewriting vm.json."""
    config = parse_host_config(host_config(tmp_path, "node2"))
    files = HostFiles(config, tmp_path / "state")
    files.prepare()
    spec = VmSpec("vm-1", "web1", 16, 1, 1, StorageRef(StorageKind.CSV, "Volume1"))
    vm_dir = files.vm_dir(spec)
    files.write_lease(vm_dir, Lease(2, "node2"))
    files.create_disk(vm_dir, 1)
    (vm_dir / "vm.json").write_text(json.dumps(spec_to_json(spec) | {"owner_host": "node1"}))
    entry = RegistryEntry("vm-1", spec.storage, str(vm_dir), PowerState.MIGRATING, 0.0, "", 2)

    vm = load_registered(files, config, entry, VM_DISK)

    assert vm is not None and vm.state is PowerState.STOPPED  # restarted by the caller
    assert files.read_vm_config(vm_dir)[1] == "node2"
    assert load_registered(files, config, replace(entry, lease_generation=1), VM_DISK) is None
