"""When a host must decide alone that it is isolated, and what it then does to its VMs.

A host that hears neither the manager (no management call) nor the broker (the
heartbeat network) cannot tell whether the cluster has declared it dead and restarted
its VMs elsewhere. After `isolation_timeout_s` it applies its isolation response, as
Hyper-V and ESX clusters do, so that its copies stop before the new ones start.
Storage fencing protects the disks anyway; this protects the network identity.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from node_agent.core.config import IsolationResponse
from node_agent.core.power import Operation, PowerState


@dataclass(frozen=True)
class IsolationVerdict:
    isolated: bool
    # Apply the response now: the first check of an isolation episode past the timeout.
    respond: bool
    silent_for_s: float


def judge_isolation(
    now: float,
    last_management_call: float,
    last_broker_contact: float,
    broker_connected: bool,
    timeout_s: float,
    responded: bool,
) -> IsolationVerdict:
    """Whether the host is isolated and must respond now.

    Purely computational. `responded` says the response was already applied in
    this episode: it is applied once, and a new episode starts only after contact.
    """
    if broker_connected:
        return IsolationVerdict(isolated=False, respond=False, silent_for_s=0.0)
    silent = max(0.0, now - max(last_management_call, last_broker_contact))
    isolated = silent > timeout_s
    return IsolationVerdict(isolated=isolated, respond=isolated and not responded, silent_for_s=silent)


def isolation_actions(
    response: IsolationResponse, vms: Iterable[tuple[str, PowerState]]
) -> list[tuple[str, Operation]]:
    """The operation to run on each VM (by id) for an isolation response.

    Purely computational. A paused guest cannot shut itself down, so a graceful
    response turns it off; VMs between states are left to finish their change.
    """
    if response is IsolationResponse.LEAVE_RUNNING:
        return []
    actions: list[tuple[str, Operation]] = []
    for vm_id, state in sorted(vms):
        if state is PowerState.PAUSED:
            actions.append((vm_id, Operation.TURN_OFF))
        elif state is PowerState.RUNNING:
            graceful = response is IsolationResponse.SHUT_DOWN
            actions.append((vm_id, Operation.SHUTDOWN if graceful else Operation.TURN_OFF))
    return actions
