"""Typed readers of topology fields: each returns the value or raises TopologyError.

Kept apart from the topology parser so that the parser reads as the list of rules
it enforces, and the wording of every error ("must be a positive integer, got
'lots'") is decided in one place.
"""

from __future__ import annotations

import re
from typing import Any

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Names of hosts, clusters, volumes, VMs and networks: long enough for any real one,
# short enough to show in a table and to be a DNS label.
NAME_MAX_LENGTH = 63
# Free text (a CPU model, a network adapter's name, an address).
TEXT_MAX_LENGTH = 255


def name_problem(value: str) -> str | None:
    """Why `value` is no valid name, as the end of "must ..."; None when it is one."""
    if len(value) > NAME_MAX_LENGTH:
        return f"be at most {NAME_MAX_LENGTH} characters, got {len(value)}"
    if not NAME_PATTERN.fullmatch(value):
        return f"be a name matching {NAME_PATTERN.pattern}, got {value!r}"
    return None


class TopologyError(ValueError):
    """A topology (or one host entry of it) is wrong; `field` is the path of the bad
    value, `message` the sentence `field: problem` shown to the user."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.message = f"{field}: {problem}"


def read_mapping(value: object, field: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TopologyError(field, f"must be a mapping, got {show_value(value)}")
    for key in value:
        if key not in allowed:
            raise TopologyError(join_path(field, str(key)), "unknown field")
    return value


def read_list(value: object, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise TopologyError(field, f"must be a list, got {show_value(value)}")
    return value


def read_int(value: object, field: str, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer within bounds; every field has a maximum so no value overflows the wire."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise TopologyError(field, f"must be {kind}, got {show_value(value)}")
    if maximum is not None and value > maximum:
        raise TopologyError(field, f"must be at most {maximum}, got {value}")
    return value


def read_number(
    value: object, field: str, minimum: float, maximum: float, exclusive_minimum: bool = False
) -> float:
    """A finite number (integer or not) within bounds."""
    too_small = isinstance(value, (int, float)) and (
        value <= minimum if exclusive_minimum else value < minimum
    )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or too_small:
        kind = f"a number > {minimum:g}" if exclusive_minimum else f"a number >= {minimum:g}"
        raise TopologyError(field, f"must be {kind}, got {show_value(value)}")
    if value > maximum:
        raise TopologyError(field, f"must be at most {maximum:g}, got {value}")
    return float(value)


def read_text(value: object, field: str, maximum: int = TEXT_MAX_LENGTH) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TopologyError(field, f"must be a non-empty string, got {show_value(value)}")
    if len(value) > maximum:
        raise TopologyError(field, f"must be at most {maximum} characters, got {len(value)}")
    return value


def read_name(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise TopologyError(field, f"must be a name matching {NAME_PATTERN.pattern}, got {show_value(value)}")
    problem = name_problem(value)
    if problem is not None:
        raise TopologyError(field, f"must {problem}")
    return value


def read_choice(value: object, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise TopologyError(field, f"must be one of {', '.join(choices)}, got {show_value(value)}")
    return str(value)


def read_required(entry: dict[str, Any], key: str, field: str) -> Any:
    if key not in entry or entry[key] is None:
        raise TopologyError(join_path(field, key), "is required")
    return entry[key]


def join_path(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def show_value(value: object) -> str:
    if isinstance(value, (dict, list)):
        return f"a {type(value).__name__}"
    return repr(value)
