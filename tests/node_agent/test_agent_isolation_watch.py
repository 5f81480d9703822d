"""The isolation watch counts from the last contact the broker proved, not from when a
connection looks lost: on virtual time with a fake clock, and with the real status
publisher over a broker session that stays open while its echoes stop."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent_testkit import host_config

from node_agent.app.isolation import IsolationWatch
from node_agent.app.status import StatusPublisher
from node_agent.core.config import AgentSettings, parse_host_config
from node_agent.core.power import Operation, PowerState
from node_agent.core.views import HostLoad, VmView
from node_agent.core.vm import StorageKind, StorageRef, VmSpec


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeHost:
    """What the watch sees of a host: its clock, its management calls and its VMs."""

    clock: Callable[[], float]
    config: object
    last_management_call: float
    states: dict[str, PowerState] = field(default_factory=dict)
    # (clock time, VM id, operation) of every operation the watch ran.
    operations: list[tuple[float, str, Operation]] = field(default_factory=list)
    let_go_at: list[float] = field(default_factory=list)

    def list_vms(self) -> list[VmView]:
        return [VmView(_spec(vm_id), state, "", 0.0) for vm_id, state in sorted(self.states.items())]

    async def operate(self, vm_id: str, operation: Operation) -> VmView:
        self.operations.append((self.clock(), vm_id, operation))
        self.states[vm_id] = PowerState.STOPPED
        return VmView(_spec(vm_id), PowerState.STOPPED, "", 0.0)

    def let_go_stale_copies(self) -> list[str]:
        self.let_go_at.append(self.clock())
        return []


def _spec(vm_id: str) -> VmSpec:
    return VmSpec(vm_id, vm_id, 512, 1, 10, StorageRef(StorageKind.CSV, "Volume1"), ("External",), True)


def _config(tmp_path: Path) -> object:
    return parse_host_config(host_config(tmp_path))


async def test_the_response_fires_at_the_last_echo_plus_the_timeout_on_virtual_time(tmp_path: Path) -> None:
    settings = AgentSettings(isolation_timeout_s=15.0, isolation_check_interval_s=0.25)
    clock = FakeClock(1000.0)
    host = FakeHost(
        clock, _config(tmp_path), last_management_call=1000.0, states={"vm-1": PowerState.RUNNING}
    )
    # The broker session stays connected the whole time: only its echoes say anything.
    echoes: list[float] = []
    watch = IsolationWatch(host, settings, broker_contact=lambda: echoes[-1] if echoes else None)  # type: ignore[arg-type]

    cut_at = 1030.6  # the cable is pulled between two beats (one a second)
    beat = 1000.0
    while clock.now < 1060.0:
        if clock.now >= beat:
            if clock.now < cut_at:
                echoes.append(clock.now)  # the broker sends the beat straight back
            beat += 1.0
        if clock.now < 1010.0:
            host.last_management_call = clock.now  # a manager refresh now and then, then silence
        await watch.check()
        clock.now = round(clock.now + settings.isolation_check_interval_s, 6)

    last_contact = echoes[-1]
    assert last_contact == 1030.0
    [(responded_at, vm_id, operation)] = host.operations
    assert (vm_id, operation) == ("vm-1", Operation.TURN_OFF)
    # At the last contact plus the timeout, to one check interval; not at the moment a
    # keepalive would have noticed the session gone.
    assert last_contact + 15.0 <= responded_at < last_contact + 15.0 + settings.isolation_check_interval_s
    assert responded_at - cut_at < 15.0
    assert host.let_go_at == []

    # Contact returns: the episode ends and the copies the cluster took meanwhile go.
    echoes.append(clock.now)
    await watch.check()
    assert host.let_go_at == [clock.now]
    await watch.check()
    assert host.let_go_at == [clock.now], "let go once per episode"


async def test_management_calls_alone_are_contact_on_virtual_time(tmp_path: Path) -> None:
    settings = AgentSettings(isolation_timeout_s=5.0, isolation_check_interval_s=0.5)
    clock = FakeClock(0.0)
    host = FakeHost(clock, _config(tmp_path), last_management_call=0.0, states={"vm-1": PowerState.RUNNING})
    watch = IsolationWatch(host, settings, broker_contact=lambda: None)  # type: ignore[arg-type]
    while clock.now < 20.0:
        host.last_management_call = clock.now - 4.0 if clock.now >= 4.0 else 0.0  # a call every few s
        await watch.check()
        clock.now += settings.isolation_check_interval_s
    assert host.operations == []
    # Never heard from the broker, and the calls stop: the count runs from the last call.
    last_call = host.last_management_call
    while not host.operations:
        await watch.check()
        clock.now += settings.isolation_check_interval_s
    assert host.operations[0][0] - last_call == 5.0


@dataclass
class OpenSession:
    """A broker session that never reports a lost connection, like a TCP session
    through a pulled cable; `cut` stops the broker's answers, as the cable does."""

    cut: bool = False
    statuses: list[dict] = field(default_factory=list)
    _echo: Callable[[bytes], None] | None = None

    async def open(self) -> None:
        pass

    async def publish_status(self, payload: bytes) -> None:
        self.statuses.append(json.loads(payload))

    async def publish_heartbeat(self, topic: str, payload: bytes) -> None:
        if not self.cut and self._echo is not None:
            asyncio.get_running_loop().call_soon(self._echo, payload)

    async def receive_echoes(self, on_echo: Callable[[bytes], None]) -> None:
        self._echo = on_echo
        await asyncio.Event().wait()  # connected, for ever

    async def close(self) -> None:
        pass


def _publisher(settings: AgentSettings, session: OpenSession, boot_id: str = "boot-1") -> StatusPublisher:
    return StatusPublisher(
        settings,
        lambda: session,  # type: ignore[arg-type,return-value]
        online={"state": "online", "host": "node1", "boot_id": boot_id},
        stopped=lambda reason: {"state": "stopped", "host": "node1", "boot_id": boot_id, "reason": reason},
        broker="broker:1883",
        host="node1",
        boot_id=boot_id,
        load=lambda: HostLoad(0, 1024),
        clock=time.time,
    )


async def test_an_open_session_whose_echoes_stopped_is_no_contact(tmp_path: Path) -> None:
    settings = AgentSettings(
        heartbeat_interval_s=0.05,
        status_interval_s=60.0,
        isolation_timeout_s=0.6,
        isolation_check_interval_s=0.02,
    )
    session = OpenSession()
    publisher = _publisher(settings, session)
    host = FakeHost(time.time, _config(tmp_path), time.time(), states={"vm-1": PowerState.RUNNING})
    watch = IsolationWatch(host, settings, broker_contact=lambda: publisher.last_contact)  # type: ignore[arg-type]
    publisher.start()
    watch.start()
    try:
        await asyncio.sleep(0.3)
        assert publisher.connected and publisher.last_contact is not None
        assert time.time() - publisher.last_contact < 0.2, "every echoed beat is contact"
        session.cut = True
        cut_at = time.time()
        deadline = cut_at + 5
        while not host.operations and time.time() < deadline:
            await asyncio.sleep(0.01)
        assert host.operations, "no isolation response"
        responded_at = host.operations[0][0]
        assert publisher.connected, "the session still looks connected"
        # Counted from the last echo, which came at most one beat before the cut.
        delay = responded_at - cut_at
        assert settings.isolation_timeout_s - settings.heartbeat_interval_s <= delay
        assert delay < settings.isolation_timeout_s + 0.25
        assert responded_at - publisher.last_contact >= settings.isolation_timeout_s
    finally:
        await watch.stop()
        await publisher.stop("test over")
    assert session.statuses[-1] == {
        "state": "stopped",
        "host": "node1",
        "boot_id": "boot-1",
        "reason": "test over",
    }


async def test_echoes_of_another_boot_are_no_contact() -> None:
    settings = AgentSettings(heartbeat_interval_s=0.05, status_interval_s=60.0)
    session = OpenSession()
    publisher = _publisher(settings, session, boot_id="boot-2")
    publisher.start()
    try:
        await asyncio.sleep(0.1)
        assert session._echo is not None
        contact = publisher.last_contact
        assert contact is not None
        session.cut = True
        await asyncio.sleep(0.05)
        before = publisher.last_contact
        # An older boot of this host still publishing (or anybody else) proves nothing.
        session._echo(json.dumps({"host": "node1", "boot_id": "boot-1", "seq": 9}).encode())
        session._echo(b"not json")
        assert publisher.last_contact == before
        session._echo(json.dumps({"host": "node1", "boot_id": "boot-2", "seq": 9}).encode())
        assert publisher.last_contact is not None and before is not None
        assert publisher.last_contact > before
    finally:
        await publisher.stop()
