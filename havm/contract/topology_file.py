"""The topology as YAML text: the one place that reads and writes the file format.

Kept apart from `topology` so that the schema stays pure (the manager's core imports
it) while the manager's entry point and the CLI share one reader: the same YAML
errors, with line and column, and the same parser behind them.
"""

from __future__ import annotations

from typing import Any

import yaml

from havm.contract.topology import Topology, parse_topology, topology_to_dict


class TopologyYamlError(ValueError):
    """The text is not YAML at all; `line` and `column` count from 1 (0 when unknown)."""

    def __init__(self, problem: str, line: int = 0, column: int = 0) -> None:
        where = f" at line {line}, column {column}" if line else ""
        super().__init__(f"not valid YAML{where}: {problem}")
        self.problem = problem
        self.line = line
        self.column = column


def yaml_data(text: str) -> Any:
    """What `yaml.safe_load` makes of `text`; TopologyYamlError saying where it is broken."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is None:
            raise TopologyYamlError(problem) from None
        raise TopologyYamlError(problem, mark.line + 1, mark.column + 1) from None


def topology_from_yaml(text: str) -> Topology:
    """The topology the text describes; TopologyYamlError or TopologyError (naming the
    field) when it is wrong."""
    return parse_topology(yaml_data(text))


def topology_to_yaml(topology: Topology, header: str = "") -> str:
    """The explicit YAML form of a topology (`header` lines as comments on top);
    topology_from_yaml reads it back."""
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return comments + str(yaml.safe_dump(topology_to_dict(topology), sort_keys=False))
