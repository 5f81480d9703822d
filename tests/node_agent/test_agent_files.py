"""The lease file on shared storage: written atomically, re-read only when it changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from node_agent.adapters.files import LeaseWatch, read_lease_file, write_atomically
from node_agent.core.errors import StorageFault
from node_agent.core.lease import Lease


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
