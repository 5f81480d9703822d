"""A scenario's `commands` file, parsed into steps before anything runs.

One step per line; `#` starts a comment. A line is one of:

- `advance DURATION`: let time pass (`500ms`, `5s`, `2m`, `1.5s`);
- `expect vm NAME STATE [on HOST | on !HOST] [reason TEXT]`, `expect host NAME STATE`,
  `expect cluster NAME STATE`: what the manager says now;
- `fails havm-command ...`: a command that must be refused;
- anything else: a `havm` command line, as typed after `havm` (`vm create web1 --ha`,
  `fault crash node1`, `host start node1`, `restart manager`).

Errors name the line, so that a typo is found before a long run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from havm.v1 import common_pb2, manager_pb2


class ScenarioFileError(Exception):
    """A scenario folder or file that cannot be run; the sentence names the place."""


def _words(enum: object, prefix: str) -> frozenset[str]:
    names = enum.keys()  # type: ignore[attr-defined]
    return frozenset(n[len(prefix) :].lower() for n in names if not n.endswith("UNSPECIFIED"))


VM_STATES = _words(common_pb2.VmState, "VM_STATE_")
HOST_STATES = _words(manager_pb2.HostState, "HOST_STATE_")
CLUSTER_STATES = _words(manager_pb2.ClusterState, "CLUSTER_STATE_")
_STATES = {"vm": VM_STATES, "host": HOST_STATES, "cluster": CLUSTER_STATES}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Step:
    line: int
    text: str


@dataclass(frozen=True)
class Advance(Step):
    seconds: float


@dataclass(frozen=True)
class Expect(Step):
    subject: str  # vm, host, cluster
    name: str
    state: str
    on_host: str | None = None
    not_on: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class Command(Step):
    argv: tuple[str, ...]
    must_fail: bool = False

    @property
    def is_fault(self) -> bool:
        """A fault or a power action: done to the processes, not asked of the manager."""
        head = self.argv[:2]
        return self.argv[:1] in (("fault",), ("restart",)) or head == ("host", "start")


def parse_duration(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 500ms, 5s, 1.5s or 2m")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_steps(text: str, source: str = "commands") -> list[Step]:
    steps: list[Step] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        try:
            steps.append(_parse_line(number, line))
        except ValueError as error:
            raise ScenarioFileError(f"{source} line {number}: {_sentence(error)}") from None
    if not steps:
        raise ScenarioFileError(f"{source}: has no steps")
    return steps


def _sentence(error: ValueError) -> str:
    text = str(error)
    # shlex says "No closing quotation" / "No escaped character": name what to fix.
    return f"unbalanced quotes or a trailing backslash ({text.lower()})" if text.startswith("No ") else text


def _parse_line(number: int, line: str) -> Step:
    words = shlex.split(line)
    head = words[0]
    if head == "advance":
        if len(words) != 2:
            raise ValueError("advance takes one duration, e.g. `advance 5s`")
        seconds = parse_duration(words[1])
        if seconds <= 0:
            raise ValueError("advance needs a duration above 0")
        return Advance(number, line, seconds)
    if head == "expect":
        return _parse_expect(number, line, words[1:])
    if head == "fails":
        if len(words) < 2:
            raise ValueError("fails needs the command that must be refused")
        return Command(number, line, tuple(words[1:]), must_fail=True)
    if head == "havm":
        words = words[1:]
    return Command(number, line, tuple(words))


def _parse_expect(number: int, line: str, words: list[str]) -> Expect:
    if len(words) < 3 or words[0] not in _STATES:
        raise ValueError("expect vm|host|cluster NAME STATE ...")
    subject, name, state = words[0], words[1], words[2].lower()
    if state not in _STATES[subject]:
        raise ValueError(f"{state!r} is not a {subject} state; one of {', '.join(sorted(_STATES[subject]))}")
    rest = words[3:]
    on_host, not_on, reason = None, False, None
    while rest:
        key = rest.pop(0)
        if not rest:
            raise ValueError(f"{key} needs a value")
        value = rest.pop(0)
        if key == "on" and subject == "vm":
            not_on = value.startswith("!")
            on_host = value.lstrip("!")
        elif key == "reason":
            reason = value
        else:
            raise ValueError(f"unknown clause {key!r}; expect takes `on [!]HOST` (VMs) and `reason TEXT`")
    return Expect(number, line, subject, name, state, on_host, not_on, reason)


@dataclass(frozen=True)
class ScenarioFolder:
    path: Path
    topology: Path | None
    steps: list[Step]
    expected_log: str | None

    @property
    def name(self) -> str:
        return self.path.name


def load_folder(path: Path) -> ScenarioFolder:
    if not path.is_dir():
        raise ScenarioFileError(f"{path}: is not a scenario folder")
    topology: Path | None = path / "topology.yaml"
    if topology is not None and not topology.exists():
        topology = None  # the built-in default topology, as `havm up` without --topology
    commands = path / "commands"
    if not commands.is_file():
        raise ScenarioFileError(f"{path}: has no commands file")
    try:
        text = commands.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioFileError(f"{commands}: cannot be read ({error})") from None
    steps = parse_steps(text, str(commands))
    expected = path / "expected.log"
    return ScenarioFolder(path, topology, steps, expected.read_text() if expected.is_file() else None)
