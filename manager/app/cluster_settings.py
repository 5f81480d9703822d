"""Changing a cluster's settings (`havm cluster set`): its reserve, judged again at once.

The reserve is the number of node failures the cluster must absorb (capacity); an
operator's value overrides the topology's and survives a reload. The change is a job
like every other, and its summary says the cluster's verdict under the new reserve.
"""

from __future__ import annotations

from dataclasses import replace

from manager.app.capacity import CapacityService
from manager.app.events import EventBus
from manager.app.jobs import JobBook, JobHandle
from manager.core.errors import InvalidArgumentError, NotFoundError
from manager.core.model import ClusterRecord, JobRecord
from manager.core.store import Store


class ClusterSettings:
    def __init__(self, store: Store, jobs: JobBook, events: EventBus, capacity: CapacityService) -> None:
        self._store = store
        self._jobs = jobs
        self._events = events
        self._capacity = capacity

    def _cluster(self, name: str) -> ClusterRecord:
        cluster = self._store.get_cluster(name)
        if cluster is None:
            raise NotFoundError(f"cluster {name} does not exist")
        return cluster

    def update(self, name: str, reserve: int | None) -> tuple[JobRecord, ClusterRecord]:
        cluster = self._cluster(name)
        if reserve is not None and not 0 <= reserve < len(cluster.nodes):
            raise InvalidArgumentError(
                f"reserve: must be from 0 to {len(cluster.nodes) - 1} for cluster {name} "
                f"({len(cluster.nodes)} nodes), got {reserve}"
            )

        async def work(job: JobHandle) -> str:
            current = self._cluster(name)
            if reserve is None or reserve == current.reserve:
                summary = f"Cluster {name}: reserve stays {current.reserve}"
            else:
                job.progress(30, f"Setting the reserve of cluster {name} to {reserve}")
                self._store.put_cluster(replace(current, reserve=reserve, reserve_overridden=True))
                self._events.emit(
                    "cluster", f"cluster {name} reserve {current.reserve} => {reserve}", cluster=name
                )
                self._capacity.changed(name)
                summary = f"Cluster {name}: reserve {current.reserve} => {reserve}"
            job.progress(60, f"Judging cluster {name} against its reserve")
            return f"{summary}; the cluster is {self._capacity.report(name).summary()}"

        job = self._jobs.start("update_cluster", name, f"Changing the settings of cluster {name}", work)
        return job, cluster
