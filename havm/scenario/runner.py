"""Runs a scenario folder and judges it: expectations, invariants, the event log.

The same steps run on either driver:

- `SimDriver` (the default): the whole cluster in this process on virtual time
  (sim_cluster); deterministic, so its event log must match `expected.log` line for
  line, timestamps included.
- `RealDriver` (`--real`): a cluster of real processes started by `havm up`, on real
  time (`advance` sleeps). Timing varies there, so its log is shown against
  `expected.log` for information and only expectations and invariants decide.

Throughout, the two invariants of the project are checked: no VM runs on two hosts
at once (two running copies of one lease generation, and at the end every guest's
disk journal one unbroken run that no stale copy wrote to), and no highly available
VM is lost (one the manager calls running must run where it says, at the end).
"""

from __future__ import annotations

import asyncio
import difflib
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc

from havm.scenario.journals import journal_violations
from havm.scenario.steps import Advance, Command, Expect, ScenarioFolder, Step
from havm.v1 import common_pb2, manager_pb2, manager_pb2_grpc

# The invariants are checked this often while time passes on virtual time.
INVARIANT_CHECK_S = 0.5


@dataclass(frozen=True)
class Copy:
    host: str
    vm_id: str
    name: str
    running: bool
    generation: int


class Driver(Protocol):
    def now(self) -> float: ...

    def manager_channel(self) -> Any: ...

    async def command(self, argv: tuple[str, ...], fault: bool) -> tuple[int, str, str]: ...

    async def advance(self, seconds: float) -> None: ...

    def event_seconds(self, event: manager_pb2.Event) -> float: ...

    async def copies(self, final: bool) -> list[Copy] | None:
        """Every VM copy on every host that can be asked now (`final`: at the end);
        None when the driver does not look now."""
        ...

    def disks_root(self) -> Path:
        """The folder under which every host's disks and the shared storage lie."""
        ...


@dataclass
class Outcome:
    step: Step
    passed: bool
    detail: str = ""


@dataclass
class ScenarioResult:
    name: str
    mode: str
    outcomes: list[Outcome] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    expected_log: str | None = None
    violations: list[str] = field(default_factory=list)
    virtual_seconds: float = 0.0
    wall_seconds: float = 0.0
    error: str | None = None

    @property
    def log_text(self) -> str:
        return "".join(line + "\n" for line in self.log)

    @property
    def log_matches(self) -> bool:
        return self.expected_log is None or self.expected_log == self.log_text

    def diff(self) -> list[str]:
        """The log against expected.log; on real time without the times, which always differ."""
        if self.expected_log is None or self.log_matches:
            return []
        expected, actual = self.expected_log.splitlines(), self.log
        if self.mode == "real":
            expected, actual = [_untimed(line) for line in expected], [_untimed(line) for line in actual]
        return list(difflib.unified_diff(expected, actual, "expected.log", "this run", lineterm="", n=2))

    def report(self, verbose: bool = False, recording: bool = False) -> list[str]:
        """What a person reads: the verdict, failed (or all) expectations, broken
        invariants and the log's difference from expected.log."""
        verdict = "PASS" if self.passed else "FAIL"
        lines = [
            f"{verdict} {self.name} ({self.mode}: {self.virtual_seconds:.1f} s of scenario "
            f"in {self.wall_seconds:.2f} s)"
        ]
        if self.error is not None:
            lines.append(f"  error: {self.error}")
        for outcome in self.outcomes:
            if verbose or not outcome.passed:
                sign = "ok  " if outcome.passed else "FAIL"
                lines.append(f"  {sign} line {outcome.step.line}: {outcome.step.text}  -> {outcome.detail}")
        lines.extend(f"  invariant broken: {violation}" for violation in self.violations)
        diff = self.diff()
        if diff:
            note = "" if self.mode == "virtual" else " (for information: real time varies)"
            lines.append(f"  the event log differs from expected.log{note}:")
            lines.extend(f"    {line}" for line in diff)
        elif self.expected_log is None and self.mode == "virtual" and not recording:
            lines.append("  no expected.log yet (write one with `havm scenario record`)")
        return lines

    @property
    def passed(self) -> bool:
        steps_ok = all(o.passed for o in self.outcomes)
        log_ok = self.log_matches or self.mode == "real"
        return self.error is None and steps_ok and not self.violations and log_ok


def _untimed(line: str) -> str:
    return line[11:] if len(line) > 11 and line[9:11] == "  " else line


class _Log:
    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self.lines: list[str] = []

    def add(self, seconds: float, text: str) -> None:
        self.lines.append(f"{seconds:9.3f}  {text}")

    def now(self, text: str) -> None:
        self.add(self._driver.now(), text)


async def run_steps(driver: Driver, folder: ScenarioFolder, result: ScenarioResult) -> None:
    log = _Log(driver)
    watcher = asyncio.get_running_loop().create_task(_watch_events(driver, log))
    checker = asyncio.get_running_loop().create_task(_check_invariants_while_running(driver, result))
    try:
        for step in folder.steps:
            await _run_step(driver, step, log, result)
            await _check_copies(driver, result, final=False)
        await asyncio.sleep(0)
        await _check_copies(driver, result, final=True)
    finally:
        for task in (watcher, checker):
            task.cancel()
        await asyncio.gather(watcher, checker, return_exceptions=True)
        await asyncio.sleep(0.01)  # the streams they read end on the server's side too
        result.log = log.lines


async def _run_step(driver: Driver, step: Step, log: _Log, result: ScenarioResult) -> None:
    if isinstance(step, Advance):
        await driver.advance(step.seconds)
        return
    if isinstance(step, Expect):
        passed, detail = await _expect(driver, step)
        result.outcomes.append(Outcome(step, passed, detail))
        return
    assert isinstance(step, Command)
    log.now(f"$ {step.text}")
    code, out, err = await driver.command(step.argv, step.is_fault)
    for line in out.splitlines():
        log.now(f"  {line}")
    for line in err.splitlines():
        log.now(f"! {line}")
    if step.must_fail:
        result.outcomes.append(Outcome(step, code != 0, "refused" if code else "was not refused"))
    elif code != 0:
        result.outcomes.append(Outcome(step, False, err.strip() or f"exit status {code}"))


async def _expect(driver: Driver, step: Expect) -> tuple[bool, str]:
    stub = manager_pb2_grpc.ManagerServiceStub(driver.manager_channel())
    try:
        if step.subject == "vm":
            vm = (await stub.GetVm(manager_pb2.GetVmRequest(name=step.name), timeout=10)).vm
            state = common_pb2.VmState.Name(vm.state)[len("VM_STATE_") :].lower()
            got = f"{state} on {vm.host or 'no host'}" + (f" ({vm.reason})" if vm.reason else "")
            ok = state == step.state
            if step.on_host is not None:
                ok = ok and ((vm.host != step.on_host) if step.not_on else (vm.host == step.on_host))
            if step.reason is not None:
                ok = ok and step.reason in vm.reason
            return ok, got
        if step.subject == "host":
            host = (await stub.GetHost(manager_pb2.GetHostRequest(name=step.name), timeout=10)).host
            state = manager_pb2.HostState.Name(host.state)[len("HOST_STATE_") :].lower()
            got = state + (f" ({host.state_reason})" if host.state_reason else "")
            ok = state == step.state and (step.reason is None or step.reason in host.state_reason)
            return ok, got
        cluster = (await stub.GetCluster(manager_pb2.GetClusterRequest(name=step.name), timeout=10)).cluster
        state = manager_pb2.ClusterState.Name(cluster.state)[len("CLUSTER_STATE_") :].lower()
        return state == step.state, state
    except grpc.aio.AioRpcError as error:
        return False, f"the manager answered {error.code().name}: {error.details()}"


async def _watch_events(driver: Driver, log: _Log) -> None:
    """Every event of the manager into the log; across manager restarts."""
    while True:
        stub = manager_pb2_grpc.ManagerServiceStub(driver.manager_channel())
        try:
            async for reply in stub.WatchEvents(manager_pb2.WatchEventsRequest(replay=0, follow=True)):
                event = reply.event
                log.add(driver.event_seconds(event), f"{event.kind}: {event.detail}")
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.5)


async def _check_invariants_while_running(driver: Driver, result: ScenarioResult) -> None:
    while True:
        await asyncio.sleep(INVARIANT_CHECK_S)
        await _check_copies(driver, result, final=False)


async def _check_copies(driver: Driver, result: ScenarioResult, final: bool) -> None:
    copies = await driver.copies(final)
    if copies is None:
        return
    by_vm: dict[str, list[Copy]] = {}
    for copy in copies:
        if copy.running:
            by_vm.setdefault(copy.vm_id, []).append(copy)
    for running in by_vm.values():
        generations = [c.generation for c in running]
        if len(running) > 1 and len(set(generations)) < len(generations):
            hosts = ", ".join(sorted(c.host for c in running))
            message = f"at {driver.now():.3f} s VM {running[0].name} runs on {hosts} under one lease"
            if message not in result.violations:
                result.violations.append(message)
    if not final:
        return
    for violation in journal_violations(driver.disks_root()):
        result.violations.append(violation)
    stub = manager_pb2_grpc.ManagerServiceStub(driver.manager_channel())
    try:
        vms = (await stub.ListVms(manager_pb2.ListVmsRequest(), timeout=10)).vms
    except grpc.aio.AioRpcError:
        return  # the manager is down at the end: nothing to compare with
    for vm in vms:
        if not vm.highly_available or vm.state != common_pb2.VM_STATE_RUNNING:
            continue
        if not any(c.host == vm.host for c in by_vm.get(vm.id, [])):
            result.violations.append(
                f"highly available VM {vm.name} is running on {vm.host} by the manager's "
                "records, but no copy runs there"
            )


@contextmanager
def deterministic_ids(seed: int) -> Iterator[None]:
    """uuid4 from a seeded generator: the ids of jobs, VMs and boots repeat run after run."""
    rng = random.Random(seed)
    original = uuid.uuid4
    uuid.uuid4 = lambda: uuid.UUID(int=rng.getrandbits(128), version=4)  # type: ignore[assignment]
    try:
        yield
    finally:
        uuid.uuid4 = original  # type: ignore[assignment]


def run_folder(folder: ScenarioFolder, real: bool = False) -> ScenarioResult:
    """Run one scenario to its end; never raises for what the scenario does."""
    result = ScenarioResult(folder.name, "real" if real else "virtual", expected_log=folder.expected_log)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="havm-scenario-") as tmp:
        if real:
            from havm.scenario.real_driver import run_real

            run_real(folder, Path(tmp), result)
        else:
            from havm.scenario.sim_driver import run_sim

            with deterministic_ids(0):
                run_sim(folder, Path(tmp), result)
    result.wall_seconds = time.perf_counter() - started
    return result
