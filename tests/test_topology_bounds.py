"""What a topology file may hold is bounded, and each bound names what is wrong: its
size, its text encoding, its nesting, duplicate keys, the lengths of names and text,
and (for `havm up`) the number of hosts, refused before any host is parsed."""

from __future__ import annotations

from pathlib import Path

import pytest

from havm.contract.fields import NAME_MAX_LENGTH, TopologyError
from havm.contract.topology_file import (
    MAX_NESTING,
    MAX_TOPOLOGY_BYTES,
    TopologyFileError,
    TopologyYamlError,
    load_topology_file,
    topology_from_yaml,
)

DEFAULTS = """version: 1
host_defaults:
  profile: hyperv-2008r2
  cpu: {vendor: GenuineIntel, model: Xeon, features: [nx], cores: 8, mhz: 2933}
  memory_mb: 32768
  disks: [{name: C, capacity_gb: 500}]
"""
HOST = DEFAULTS + "hosts:\n  - {name: %s}\n"


def test_a_file_larger_than_the_bound_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * MAX_TOPOLOGY_BYTES + b"\n")
    with pytest.raises(TopologyFileError) as caught:
        load_topology_file(path)
    assert str(caught.value) == (
        f"more than {MAX_TOPOLOGY_BYTES} bytes: a topology file is at most that large "
        "(HAVM_MAX_TOPOLOGY_BYTES raises the limit)"
    )


def test_text_that_is_not_utf8_says_where(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 1\n# Gerät\n".encode("latin-1"))
    with pytest.raises(TopologyFileError) as caught:
        load_topology_file(path)
    assert str(caught.value) == "not UTF-8 text (byte 0xe4 at offset 16)"


def test_an_unreadable_file_says_why(tmp_path: Path) -> None:
    with pytest.raises(TopologyFileError) as caught:
        load_topology_file(tmp_path / "missing.yaml")
    assert str(caught.value) == "cannot read it: No such file or directory"


def test_deep_nesting_is_refused_with_its_place() -> None:
    with pytest.raises(TopologyYamlError) as caught:
        topology_from_yaml("version: 1\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    assert (
        str(caught.value)
        == f"not valid YAML at line 2, column {MAX_NESTING + 3}: nested deeper than 32 levels"
    )


def test_duplicate_keys_are_refused_not_resolved_to_the_last() -> None:
    with pytest.raises(TopologyYamlError) as caught:
        topology_from_yaml("version: 1\nhosts: []\nversion: 1\n")
    assert (
        str(caught.value) == "not valid YAML at line 3, column 1: duplicate key 'version' (first at line 1)"
    )
    with pytest.raises(TopologyYamlError) as caught:
        topology_from_yaml("version: 1\nhosts:\n  - {name: a, name: b}\n")
    assert "duplicate key 'name' (first at line 3)" in str(caught.value)


def test_a_merge_key_is_not_a_duplicate() -> None:
    text = DEFAULTS + "hosts:\n  - <<: {name: a, memory_mb: 4096}\n    name: b\n"
    assert [h.name for h in topology_from_yaml(text).hosts] == ["b"]


def test_names_and_texts_have_a_maximum_length() -> None:
    long_name = "h" * (NAME_MAX_LENGTH + 1)
    with pytest.raises(TopologyError) as caught:
        topology_from_yaml(HOST % long_name)
    assert str(caught.value) == f"hosts[0].name: must be at most {NAME_MAX_LENGTH} characters, got 64"
    assert topology_from_yaml(HOST % ("h" * NAME_MAX_LENGTH)).hosts[0].name == "h" * NAME_MAX_LENGTH
    network = DEFAULTS + "hosts:\n  - {name: a, networks: [{name: %s, bound_to: x}]}\n"
    with pytest.raises(TopologyError) as caught:
        topology_from_yaml(network % ("n" * 300))
    assert str(caught.value) == "hosts[0].networks[0].name: must be at most 63 characters, got 300"


def test_too_many_hosts_are_refused_before_any_is_parsed() -> None:
    # Host entries that would each fail to parse: the count is refused first.
    text = "version: 1\nhosts:\n" + "  - {name: '!'}\n" * 300
    with pytest.raises(TopologyError) as caught:
        topology_from_yaml(text, max_hosts=256, raise_with=" (allow more with --max-hosts)")
    assert str(caught.value) == "hosts: lists 300 hosts, more than 256 (allow more with --max-hosts)"
