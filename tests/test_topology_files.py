"""Every topology the project ships or tests with loads through the one schema."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from havm.contract.topology import TopologyError
from havm.contract.topology_file import TopologyYamlError, topology_from_yaml, topology_to_yaml

REPO = Path(__file__).resolve().parents[1]
FILES = sorted(
    path
    for path in REPO.glob("**/*.yaml")
    if "topology" in path.name and not any(part.startswith(".") for part in path.relative_to(REPO).parts)
)


def test_there_are_topologies_to_load() -> None:
    assert len(FILES) >= 4


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_each_topology_file_loads_and_round_trips(path: Path) -> None:
    topology = topology_from_yaml(path.read_text())
    assert topology_from_yaml(topology_to_yaml(topology, "written back")) == topology


def test_the_built_in_default_topology_loads() -> None:
    text = resources.files("havm.cli").joinpath("default_topology.yaml").read_text()
    assert len(topology_from_yaml(text).hosts) == 6


def test_broken_yaml_says_where() -> None:
    with pytest.raises(TopologyYamlError) as caught:
        topology_from_yaml("version: 1\nhosts: [a\n")
    assert caught.value.line == 3
    assert str(caught.value).startswith("not valid YAML at line 3, column 1: ")


def test_a_schema_error_is_one_sentence_naming_the_field() -> None:
    with pytest.raises(TopologyError) as caught:
        topology_from_yaml("version: 1\nhosts: [{name: a, profile: hyperv-2008r2, memroy_mb: 1}]\n")
    assert str(caught.value) == "hosts[0].memroy_mb: unknown field"
