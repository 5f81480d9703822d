"""When a host must decide alone that it is isolated, and what it then does to its VMs.

A host that hears neither the manager (no management call) nor the broker (the
heartbeat network) cannot tell whether the cluster has declared it dead and restarted
its VMs elsewhere. `isolation_timeout_s` after its last successful contact it applies
its isolation response, as Hyper-V and ESX clusters do, so that its copies stop
before the new ones start. Storage fencing protects the disks anyway; this protects
the network identity.

Contact is what the other side proves: a management call that arrived, or a
heartbeat the broker echoed back. An open connection proves nothing: a cut cable
leaves a TCP session looking connected until its keepalive expires, seconds later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from node_agent.core.config import IsolationResponse
from node_agent.core.leave import GUEST_ACTIVE, clean_shutdown_actions
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
    timeout_s: float,
    responded: bool,
) -> IsolationVerdict:
    """Whether the host is isolated and must respond now.

    Purely computational. The host is isolated once `timeout_s` passed since the
    later of its two last contacts, whatever its connections look like. `responded`
    says the response was already applied in this episode: it is applied once, and
    a new episode starts only after contact.
    """
    silent = max(0.0, now - max(last_management_call, last_broker_contact))
    isolated = silent >= timeout_s
    return IsolationVerdict(isolated=isolated, respond=isolated and not responded, silent_for_s=silent)


def isolation_actions(
    response: IsolationResponse, vms: Iterable[tuple[str, PowerState]]
) -> list[tuple[str, Operation]]:
    """The operation to run on each VM (by id) for an isolation response.

    Purely computational. A graceful response is what a host shutting down does;
    power off turns every guest off at once.
    """
    if response is IsolationResponse.LEAVE_RUNNING:
        return []
    if response is IsolationResponse.SHUT_DOWN:
        return clean_shutdown_actions(vms)
    return [(vm_id, Operation.TURN_OFF) for vm_id, state in sorted(vms) if state in GUEST_ACTIVE]
