"""The one path by which a cluster's reserve verdict is judged, kept and told.

Anything that can change whether a cluster absorbs the loss of `reserve` nodes (a
node failing, fenced, entering or leaving maintenance, added or removed; a VM created,
started, stopped, deleted, moved or discovered; the reserve itself) marks the verdicts
stale: every host and VM state change reaches the event bus, and the bus tells this
service. Stale verdicts are judged again shortly after (changes in a burst, such as a
failover, are judged once), on every read, and periodically to catch room that a
refresh reported. A verdict that changes becomes a `cluster_state` event, which the
MQTT link also keeps as the retained topic `havm/v1/state/clusters/NAME`.
"""

from __future__ import annotations

import asyncio
import logging

from manager.app.events import EventBus
from manager.core.capacity import ReserveReport, reserve_report
from manager.core.errors import NotFoundError
from manager.core.inventory import build_snapshot
from manager.core.model import Event
from manager.core.settings import Settings
from manager.core.store import Store

log = logging.getLogger(__name__)

# Event kinds after which a verdict may be stale.
_STALE_AFTER = frozenset({"host_state", "vm_state", "topology", "failover"})


class CapacityService:
    def __init__(self, store: Store, settings: Settings, bus: EventBus) -> None:
        self._store = store
        self._settings = settings
        self._bus = bus
        self._reports: dict[str, ReserveReport] = {}
        self._stale = True
        self._wake = asyncio.Event()
        bus.add_publisher(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.kind in _STALE_AFTER:
            self.changed()

    def changed(self, cluster: str | None = None) -> None:
        """Something that can change a verdict happened (of `cluster`, or anywhere)."""
        del cluster  # judging every cluster again is cheap next to what changed
        self._stale = True
        self._wake.set()

    def report(self, cluster: str) -> ReserveReport:
        """The cluster's verdict, judged again first if anything changed since."""
        if self._stale or cluster not in self._reports:
            self.judge_all()
        report = self._reports.get(cluster)
        if report is None:
            raise NotFoundError(f"cluster {cluster} does not exist")
        return report

    def last(self, cluster: str) -> ReserveReport | None:
        """The verdict last judged, without judging again (for publishing it)."""
        return self._reports.get(cluster)

    def reports(self) -> dict[str, ReserveReport]:
        """Every cluster's verdict, judged again first if anything changed, for ratings."""
        if self._stale:
            self.judge_all()
        return dict(self._reports)

    def judge_all(self) -> None:
        """Judge every cluster now; tell each verdict that changed."""
        self._stale = False
        hosts = self._store.list_hosts()
        clusters = self._store.list_clusters()
        vms = self._store.list_vms()
        snapshot = build_snapshot(hosts, clusters, vms)
        reports: dict[str, ReserveReport] = {}
        for cluster in clusters:
            reports[cluster.name] = reserve_report(
                cluster.name,
                cluster.reserve,
                snapshot,
                vms,
                max_vcpus_per_core=self._settings.max_vcpus_per_core,
            )
        previous, self._reports = self._reports, reports
        for name, report in sorted(reports.items()):
            self._tell(previous.get(name), report)

    def _tell(self, before: ReserveReport | None, report: ReserveReport) -> None:
        if before is not None and _verdict(before) == _verdict(report):
            return
        was = f"{before.state.value} => " if before is not None else ""
        detail = f"cluster {report.cluster} {was}{report.summary()}"
        log.info("%s", detail)
        self._bus.emit(
            "cluster_state",
            detail,
            cluster=report.cluster,
            old_state=before.state.value if before is not None else "",
            new_state=report.state.value,
        )

    async def run(self) -> None:
        """Judge stale verdicts shortly after a change, and periodically."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.refresh_interval_s)
                # Let a burst of changes (a failover, a refresh) settle into one judgement.
                await asyncio.sleep(self._settings.capacity_settle_s)
            except TimeoutError:
                self._stale = True
            self._wake.clear()
            if self._stale:
                try:
                    self.judge_all()
                except Exception:  # a bug here must not stop the manager's reactions
                    log.exception("judging the cluster reserve failed")


def _verdict(report: ReserveReport) -> tuple[object, ...]:
    """What a `cluster_state` event tells: the state and the failure set that breaks it."""
    over = report.overcommit
    return (report.state, over.failed_nodes if over else (), over.unplaced_vms if over else ())
