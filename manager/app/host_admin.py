"""Hosts added to and removed from a running manager (AddHost / RemoveHost).

A host the topology does not declare can join a running manager: its agent already
listens, the manager records it (marked as added at runtime, so a restart keeps it),
refreshes it, and tells the capacity service, because a new node changes what its
cluster can absorb. Removing a host is refused while any VM is placed on it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from manager.app.jobs import JobBook
from manager.app.refresh import RefreshService
from manager.core.agent_port import AgentPort
from manager.core.errors import FailedPreconditionError
from manager.core.model import HostRecord, JobRecord
from manager.core.store import Store
from manager.core.topology import HostSpec


class HostAdmin:
    def __init__(
        self,
        store: Store,
        agents: AgentPort,
        jobs: JobBook,
        refresher: RefreshService,
        capacity_changed: Callable[[str | None], None],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._agents = agents
        self._jobs = jobs
        self._refresher = refresher
        # Called with the cluster whose nodes changed (None for a standalone host).
        self._capacity_changed = capacity_changed
        self._clock = clock

    def add(self, spec: HostSpec) -> tuple[JobRecord, HostRecord]:
        raise FailedPreconditionError("adding hosts at runtime is not available yet")

    def remove(self, name: str) -> JobRecord:
        raise FailedPreconditionError("removing hosts at runtime is not available yet")
