"""Hosts added to and removed from a running manager (AddHost / RemoveHost).

A host the topology does not declare can join a running manager: its agent already
listens, the manager records it (marked as added at runtime, so a restart keeps it),
makes it a node of its cluster, refreshes it, and tells the capacity service, because a
new node changes what its cluster can absorb. Removing a host is refused while any VM is
placed on it, while a migration or a failover involves it, or when its cluster would
keep no more nodes than its reserve.

Both decide and record at once, in one step of the event loop, so that no VM can be
placed on a host between the check and its removal; the job then carries the slow
part (the first refresh of a new host) and the record of what was done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from havm.contract.hosts import HostSpec
from manager.app.events import EventBus
from manager.app.jobs import JobBook, JobHandle
from manager.app.refresh import RefreshService
from manager.core.agent_port import AgentPort
from manager.core.errors import NotFoundError, UnavailableError
from manager.core.membership import (
    OPEN_MIGRATION_STATES,
    check_new_host,
    check_removable,
    host_record,
    joined,
    left,
    new_node_volumes,
)
from manager.core.model import HostRecord, JobRecord
from manager.core.store import Store

log = logging.getLogger(__name__)

# Every open migration is read to find those that involve a host.
ALL_MIGRATIONS = 1_000_000


class HostAdmin:
    def __init__(
        self,
        store: Store,
        agents: AgentPort,
        jobs: JobBook,
        refresher: RefreshService,
        capacity_changed: Callable[[str | None], None],
        clock: Callable[[], datetime],
        events: EventBus | None = None,
    ) -> None:
        self._store = store
        self._agents = agents
        self._jobs = jobs
        self._refresher = refresher
        # Called with the cluster whose nodes changed (None for a standalone host).
        self._capacity_changed = capacity_changed
        self._clock = clock
        self._events = events

    def _tell(self, detail: str, host: str) -> None:
        if self._events is not None:
            self._events.emit("topology", detail, host=host)

    def add(self, spec: HostSpec) -> tuple[JobRecord, HostRecord]:
        """Record the host and its membership now; refresh it in the job."""
        cluster = check_new_host(spec, self._store.list_hosts(), self._store.list_clusters())
        host = host_record(
            spec, new_node_volumes(cluster) if cluster is not None else (), added_at_runtime=True
        )
        # The host first: a manager killed between the two writes finds a node its
        # cluster does not list, and the topology loader lists it again.
        self._store.put_host(host)
        if cluster is not None:
            self._store.put_cluster(joined(cluster, host.name))
        where = f"cluster {cluster.name}" if cluster is not None else "the manager as a standalone host"
        log.info("host %s (%s) added to %s", host.name, host.address, where)
        self._tell(f"host {host.name} was added to {where} at {host.address}", host.name)
        self._capacity_changed(spec.cluster)

        async def work(job: JobHandle) -> str:
            job.progress(10, f"Asking host {host.name} at {host.address} for its inventory")
            [result] = await self._refresher.refresh([host.name])
            if self._store.get_host(host.name) is None:
                raise NotFoundError(f"host {host.name} was removed while it was being added")
            if not result.ok:
                raise UnavailableError(
                    f"host {host.name} was added to {where} but does not answer: {result.reason}; "
                    f"start its agent, or remove it (havm host remove {host.name})"
                )
            job.progress(90, f"Host {host.name} answered")
            self._capacity_changed(spec.cluster)
            return f"Added host {host.name} to {where}"

        job = self._jobs.start("add_host", host.name, f"Adding host {host.name} to {where}", work)
        return job, host

    def remove(self, name: str) -> JobRecord:
        """Forget the host now, if nothing depends on it; the job records it."""
        host = self._store.get_host(name)
        if host is None:
            raise NotFoundError(f"host {name} does not exist")
        cluster = self._store.get_cluster(host.cluster) if host.cluster else None
        open_migrations = self._store.list_migrations(ALL_MIGRATIONS, OPEN_MIGRATION_STATES)
        check_removable(host, cluster, self._store.list_vms(), open_migrations)
        self._store.delete_host(name)
        if cluster is not None:
            self._store.put_cluster(left(cluster, name))
        where = f"cluster {cluster.name}" if cluster is not None else "the manager"
        origin = "added at runtime" if host.added_at_runtime else "declared by the topology"
        log.info("host %s (%s) removed from %s", name, origin, where)
        self._tell(f"host {name} ({origin}) was removed from {where}", name)
        self._capacity_changed(host.cluster)

        async def work(job: JobHandle) -> str:
            return f"Removed host {name} from {where}"

        return self._jobs.start("remove_host", name, f"Removing host {name} from {where}", work)
