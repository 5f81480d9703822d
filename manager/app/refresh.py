"""Cluster refresh: pull every agent's inventory and reconcile it with the store.

Hosts are asked concurrently, each with its own deadline, so one silent host costs
one timeout, not one per host. A host that answers is `ok` and its inventory and VMs
are recorded; one that does not is `not_responding` and its VMs become `unknown`.

The service also keeps each answering host's latest report of the VMs it runs, so
that every refresh can check that no VM runs on two hosts at once; a duplicate it
finds goes to the resolver (app.duplicates), which stops the copy that must not run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from manager.app.claims import VmClaims
from manager.app.duplicates import DuplicateResolver
from manager.core.agent_port import AgentPort
from manager.core.duplicates import Duplicate, HostCopies, active_copies, find_duplicates, held_elsewhere
from manager.core.errors import ManagerError
from manager.core.inventory import (
    NO_ADDRESS,
    apply_inventory,
    apply_refresh_failure,
    update_cluster_volumes,
)
from manager.core.model import Inventory, VmRecord
from manager.core.profiles import differences
from manager.core.reconcile import mark_unknown, reconcile
from manager.core.settings import Settings
from manager.core.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostRefresh:
    host: str
    ok: bool
    reason: str  # empty when ok


class RefreshService:
    def __init__(
        self,
        store: Store,
        agents: AgentPort,
        settings: Settings,
        clock: Callable[[], datetime],
        claims: VmClaims,
        vm_versions: Callable[[], Mapping[str, int]],
        duplicates: DuplicateResolver | None = None,
    ) -> None:
        self._store = store
        self._agents = agents
        self._settings = settings
        self._clock = clock
        # VMs a job, a migration or a failover restart works on: their records belong to
        # that work until it ends.
        self._claims = claims
        # How often jobs wrote each VM's record: one that changed while an inventory was
        # on its way is newer than that inventory, which must not overwrite it.
        self._vm_versions = vm_versions
        self._locks: dict[str, asyncio.Lock] = {}
        # None: duplicates are not looked for.
        self._duplicates = duplicates
        # Told of each highly available VM found turned off outside the manager.
        self.on_stopped_outside: Callable[[VmRecord], None] = lambda vm: None
        # The VMs each host ran at its latest answered refresh: {host: {vm id: lease
        # generation}}. A host that stops answering is dropped: what it ran is unknown.
        self.reports: dict[str, HostCopies] = {}
        # The job writes (vm_versions) each report is newer than: a record written since
        # its host's report may be of a VM that host runs but did not report yet.
        self._report_versions: dict[str, Mapping[str, int]] = {}

    async def refresh(self, host_names: Sequence[str]) -> list[HostRefresh]:
        return list(await asyncio.gather(*(self._refresh_host(n) for n in host_names)))

    async def refresh_all(self) -> list[HostRefresh]:
        return await self.refresh([h.name for h in self._store.list_hosts()])

    async def run_periodically(self) -> None:
        """Refresh every host now, then every `refresh_interval_s` seconds, until cancelled."""
        while True:
            try:
                await self.refresh_all()
            except Exception:  # one bad round must not end the loop
                log.exception("periodic refresh failed")
            await asyncio.sleep(self._settings.refresh_interval_s)

    async def _refresh_host(self, name: str) -> HostRefresh:
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            host = self._store.get_host(name)
            if host is None:
                self._forget_report(name)
                return HostRefresh(name, False, f"host {name} does not exist")
            inventory: Inventory | None = None
            reason = ""
            busy_before = self._busy_now()
            versions_before = dict(self._vm_versions())
            if not host.address:
                reason = NO_ADDRESS
            else:
                try:
                    inventory = await self._agents.get_inventory(name, host.address)
                except ManagerError as error:
                    reason = error.message
                if inventory is not None and inventory.host_name and inventory.host_name != name:
                    reason = f"the agent at {host.address} is host {inventory.host_name}, not {name}"
                    inventory = None
            skip = self._changed_since(busy_before, versions_before)
            if inventory is None:
                self._forget_report(name)
                self._record_failure(name, reason, skip)
                return HostRefresh(name, False, reason)
            self.reports[name] = active_copies(inventory.vms)
            self._report_versions[name] = versions_before
            stored = self._store.list_vms()
            duplicates, held = self._check_copies(name, inventory, skip, stored)
            self._record_inventory(name, inventory, skip | held, stored)
            if duplicates and self._duplicates is not None:
                resolutions = await self._duplicates.resolve(duplicates, self._busy_now, tuple(self.reports))
                for resolved in resolutions:
                    for stopped_on in resolved.stopped:
                        self._forget_copy(stopped_on, resolved.vm_id)
            return HostRefresh(name, True, "")

    def _check_copies(
        self, name: str, inventory: Inventory, skip: set[str], stored: list[VmRecord]
    ) -> tuple[tuple[Duplicate, ...], set[str]]:
        """The duplicates this host's report shows, and the VMs it reports whose record
        must stay where it is (core.duplicates.held_elsewhere)."""
        if self._duplicates is None:
            return (), set()
        records = {vm.id: vm for vm in stored}
        duplicates = find_duplicates(
            self.reports, {vm.id: vm.host for vm in stored}, busy=skip, involving=name
        )
        losing = {d.vm_id for d in duplicates if name in d.stop}
        versions = self._vm_versions()
        unconfirmed = set()
        for vm in inventory.vms:
            record = records.get(vm.id)
            if record is None or record.host is None or record.host == name:
                continue
            seen = self._report_versions.get(record.host)
            if seen is None or seen.get(vm.id, 0) != versions.get(vm.id, 0):
                unconfirmed.add(vm.id)
        return duplicates, losing | held_elsewhere(name, inventory.vms, records, self.reports, unconfirmed)

    def _forget_report(self, name: str) -> None:
        """The host does not answer: what it runs is unknown."""
        self.reports.pop(name, None)
        self._report_versions.pop(name, None)

    def _busy_now(self) -> set[str]:
        """Claimed VMs, and those a failover holds (waiting to restart, or half restarted
        by a manager that died): the refresh leaves their records alone."""
        held = {vm.id for vm in self._store.list_vms() if vm.failover_from is not None}
        return self._claims.claimed() | held

    def _forget_copy(self, host: str, vm_id: str) -> None:
        """The resolver stopped this copy: the host's report no longer shows it running."""
        copies = self.reports.get(host)
        if copies is not None and vm_id in copies:
            self.reports[host] = {v: g for v, g in copies.items() if v != vm_id}

    def _changed_since(self, busy_before: set[str], versions_before: dict[str, int]) -> set[str]:
        """VMs busy before or after the agent call, or whose record a job wrote meanwhile."""
        versions = self._vm_versions()
        changed = {vm_id for vm_id, n in versions.items() if versions_before.get(vm_id) != n}
        return busy_before | self._busy_now() | changed

    def _record_failure(self, name: str, reason: str, skip: set[str]) -> None:
        host = self._store.get_host(name)
        if host is None:
            return
        if host.state_reason != reason or host.state.value != "not_responding":
            log.warning("host %s does not answer: %s", name, reason)
        self._store.put_host(apply_refresh_failure(host, reason, self._clock()))
        vms = [vm for vm in self._store.list_vms(name) if vm.id not in skip]
        for vm in mark_unknown(vms, name, reason):
            self._store.put_vm(vm)

    def _record_inventory(
        self, name: str, inventory: Inventory, skip: set[str], stored: list[VmRecord]
    ) -> None:
        host = self._store.get_host(name)
        if host is None:
            return
        now = self._clock()
        result = reconcile(
            name,
            stored,
            inventory.vms,
            now=now,
            busy=skip,
        )
        if result.stale:
            log.warning("host %s still holds stale copies of %s", name, ", ".join(result.stale))
        reported = inventory.capabilities
        if reported is not None and reported != host.reported_capabilities:
            # Logged when a report is new, not at every refresh; the agent is the authority.
            unlike = differences(host.profile, reported)
            if unlike:
                log.warning(
                    "host %s reports capabilities unlike its profile %s (%s): going by the report",
                    name,
                    host.profile,
                    "; ".join(unlike),
                )
        host = apply_inventory(host, inventory, now, result.stale)
        self._store.put_host(host)
        if host.cluster is not None:
            cluster = self._store.get_cluster(host.cluster)
            if cluster is not None:
                self._store.put_cluster(update_cluster_volumes(cluster, inventory.volumes))
        for vm in result.updates + result.missing:
            self._store.put_vm(vm)
        for vm in result.removed:
            log.warning(
                "VM %s: its create was interrupted and host %s does not have it: removed", vm.name, name
            )
            self._store.delete_vm(vm.id)
        for vm in result.imports:
            log.info("imported VM %s (%s) found on host %s", vm.name, vm.id, name)
            self._store.put_vm(vm)
        for vm in result.stopped_outside:
            self.on_stopped_outside(vm)
