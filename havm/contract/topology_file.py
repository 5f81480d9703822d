"""The topology as YAML text: the one place that reads and writes the file format.

Kept apart from `topology` so that the schema stays pure (the manager's core imports
it) while the manager's entry point, the agents and the CLI share one reader: the same
errors, with line and column, and the same bounds. A topology file is read whole and
parsed by a pure-Python YAML loader, so what it may hold is bounded before anything
large is parsed: its size, its nesting depth, and (for `havm up`) its number of hosts.
Duplicate keys, which YAML would silently resolve to the last, are refused.
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from havm.contract.fields import TopologyError
from havm.contract.topology import Topology, parse_topology, topology_to_dict

DEFAULT_MAX_TOPOLOGY_BYTES = 1024 * 1024
# Raises (or lowers) the size limit for every component that reads topologies: `havm up`
# passes its environment on to the manager and the agents it starts.
MAX_TOPOLOGY_BYTES_ENV = "HAVM_MAX_TOPOLOGY_BYTES"
MAX_NESTING = 32


def configured_max_bytes() -> int:
    """The size limit of a topology file: $HAVM_MAX_TOPOLOGY_BYTES, else 1 MiB."""
    text = os.environ.get(MAX_TOPOLOGY_BYTES_ENV, "")
    if text.isdigit() and int(text) > 0:
        return int(text)
    return DEFAULT_MAX_TOPOLOGY_BYTES


MAX_TOPOLOGY_BYTES = configured_max_bytes()


class TopologyFileError(ValueError):
    """The file cannot be a topology at all (unreadable, too large, not UTF-8 text)."""


class TopologyYamlError(TopologyFileError):
    """The text is not YAML at all; `line` and `column` count from 1 (0 when unknown)."""

    def __init__(self, problem: str, line: int = 0, column: int = 0) -> None:
        where = f" at line {line}, column {column}" if line else ""
        super().__init__(f"not valid YAML{where}: {problem}")
        self.problem = problem
        self.line = line
        self.column = column


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing duplicate keys and nesting deeper than MAX_NESTING
    (which would otherwise end in a RecursionError that names nothing)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                problem = f"nested deeper than {MAX_NESTING} levels"
                raise TopologyYamlError(problem, mark.line + 1, mark.column + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<:` merges; explicit keys beside it override by design
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base constructor names the unhashable key itself
            line = key_node.start_mark.line + 1
            if key in seen:
                raise TopologyYamlError(
                    f"duplicate key {key!r} (first at line {seen[key]})", line, key_node.start_mark.column + 1
                )
            seen[key] = line
        return super().construct_mapping(node, deep)


def yaml_data(text: str) -> Any:
    """What the safe loader makes of `text`; TopologyYamlError saying where it is broken."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is None:
            raise TopologyYamlError(problem) from None
        raise TopologyYamlError(problem, mark.line + 1, mark.column + 1) from None


def decoded(data: bytes, max_bytes: int = MAX_TOPOLOGY_BYTES) -> str:
    """The text of a topology file's bytes; TopologyFileError if too large or not UTF-8."""
    if len(data) > max_bytes:
        raise TopologyFileError(
            f"more than {max_bytes} bytes: a topology file is at most that large "
            f"({MAX_TOPOLOGY_BYTES_ENV} raises the limit)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TopologyFileError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def read_topology_text(path: Path, max_bytes: int = MAX_TOPOLOGY_BYTES) -> str:
    """A topology file's text, read no further than `max_bytes` (plus one, to tell)."""
    try:
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise TopologyFileError(f"cannot read it: {exc.strerror or exc}") from None
    return decoded(data, max_bytes)


def load_topology_file(path: Path, max_hosts: int | None = None, raise_with: str = "") -> Topology:
    """The topology of a file, within every bound (see topology_from_yaml); raises
    TopologyFileError or TopologyError, whose text the caller puts after the path."""
    return topology_from_yaml(read_topology_text(path), max_hosts, raise_with)


def topology_from_yaml(text: str, max_hosts: int | None = None, raise_with: str = "") -> Topology:
    """The topology the text describes; TopologyYamlError or TopologyError (naming the
    field) when it is wrong. With `max_hosts`, more hosts than that are refused before
    any host is parsed (`raise_with` tells how to allow more)."""
    data = yaml_data(text)
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if max_hosts is not None and isinstance(hosts, list) and len(hosts) > max_hosts:
        raise TopologyError("hosts", f"lists {len(hosts)} hosts, more than {max_hosts}{raise_with}")
    return parse_topology(data)


def topology_to_yaml(topology: Topology, header: str = "") -> str:
    """The explicit YAML form of a topology (`header` lines as comments on top);
    topology_from_yaml reads it back."""
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return comments + str(yaml.safe_dump(topology_to_dict(topology), sort_keys=False))
