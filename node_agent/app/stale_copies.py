"""Letting go of stale copies: VMs at rest here that the cluster restarted elsewhere.

After an isolation response this host keeps the stopped copy of each VM it turned
off. If meanwhile the manager restarted such a VM on another host (a take-over
writes a newer lease generation to the shared storage), the copy here is stale: it
must not be reported again, or the manager would see the VM on two hosts and keep
this host out of the cluster. The registration is dropped; never the files, which
the new owner uses. It runs when contact returns after an isolation episode and
before every inventory is answered.
"""

from __future__ import annotations

import logging

from node_agent.app.guests import release_guest
from node_agent.app.hosted_vms import HostedVms
from node_agent.core.errors import AgentError
from node_agent.core.lease import is_stale_copy

log = logging.getLogger(__name__)


class StaleCopies:
    """Finds and drops this host's stale copies; remembers what it already said about leases it
    cannot read, so that a refresh every few seconds does not repeat it."""

    def __init__(self, vms: HostedVms) -> None:
        self._vms = vms
        self._unreadable: dict[str, str] = {}

    def let_go(self) -> list[str]:
        """Drop the registration of every stale copy; return their VM ids.

        Synchronous on purpose: nothing else runs between reading a lease and
        dropping the copy. A VM under an operation is left to that operation, which
        checks the lease itself.
        """
        vms = self._vms
        dropped: list[str] = []
        hosted = vms.all()
        for gone in self._unreadable.keys() - {vm.spec.id for vm in hosted}:
            del self._unreadable[gone]
        for vm in hosted:
            if vm.lock.locked() or vm.migration_id:
                continue
            try:
                lease = vm.lease_watch.current()
            except (AgentError, OSError) as exc:
                problem = getattr(exc, "message", str(exc))
                if self._unreadable.get(vm.spec.id) != problem:
                    log.warning(
                        "VM %s: its lease cannot be read (%s); keeping the copy here", vm.label, problem
                    )
                    self._unreadable[vm.spec.id] = problem
                continue
            self._unreadable.pop(vm.spec.id, None)
            if lease is None or not is_stale_copy(vms.config.name, vm.state, vm.lease_generation, lease):
                continue
            # Expected after a failover or a quick migration away: not a problem of this host.
            log.info(
                "VM %s: the copy here (%s, generation %d) is stale: %s holds the VM at generation %d; "
                "letting it go, its files stay with %s",
                vm.label,
                vm.state.value,
                vm.lease_generation,
                lease.owner,
                lease.generation,
                lease.owner,
            )
            release_guest(vm)
            vms.forget(vm)
            dropped.append(vm.spec.id)
        return dropped
