"""A host's free memory, asked of its agent as soon as a VM there changed.

A save, stop, delete or migration changes what a host has free at once, but the host
record only learns it from an inventory. Waiting for the next periodic refresh would
show a stale `memory_free_mb` for seconds, so the job that made the change asks the
agent (one GetInventory) before it completes. Only the host's figures are taken: the
VM records belong to the job, and the next refresh reconciles everything else.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from manager.core.agent_port import AgentPort
from manager.core.errors import ManagerError
from manager.core.store import Store

log = logging.getLogger(__name__)


async def settle_host_memory(store: Store, agents: AgentPort, host_name: str) -> None:
    """Record the host's free memory as its agent reports it now; a silent agent is
    left to the refresh and the failure detector."""
    host = store.get_host(host_name)
    if host is None or not host.address:
        return
    try:
        inventory = await agents.get_inventory(host.name, host.address)
    except ManagerError as error:
        log.info("host %s did not report its memory after a change: %s", host_name, error.message)
        return
    current = store.get_host(host_name)
    if current is not None:
        store.put_host(replace(current, memory_free_mb=inventory.memory_free_mb))
