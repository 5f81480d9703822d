"""The duplicate resolver: stop the copies of a VM that run where it should not.

The refresh service finds duplicates in the hosts' latest reports (core.duplicates);
this service acts on them. Reports of different hosts are taken at different times,
so a VM that just moved may seem to run on both its old and its new host: before
stopping anything the resolver asks every host involved again, decides again on
those answers, and acts only if the VM really runs twice. It turns the losing copy
off and has its host forget it (the agent deletes the files only if they are still
that copy's own: never those whose lease another host holds), records the incident
on the VM, keeps the VM recorded on the kept host, and tells the event bus.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from manager.app.events import EventBus
from manager.app.vms import VmService
from manager.core.agent_port import AgentPort
from manager.core.duplicates import Duplicate, active_copies, find_duplicates, incident_for
from manager.core.errors import FailedPreconditionError, ManagerError, NotFoundError
from manager.core.model import ReportedVm, VmOperation, VmRecord
from manager.core.reconcile import reconcile
from manager.core.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolution:
    vm_id: str
    kept: str
    stopped: tuple[str, ...]  # the hosts whose copy is gone now


class DuplicateResolver:
    def __init__(
        self,
        store: Store,
        agents: AgentPort,
        vms: VmService,
        bus: EventBus,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._agents = agents
        self._vms = vms
        self._bus = bus
        self._clock = clock
        # VMs being resolved now: hosts refreshed together find the same duplicate.
        self._resolving: set[str] = set()

    async def resolve(
        self,
        duplicates: Sequence[Duplicate],
        busy: Callable[[], Collection[str]],
        answering: Collection[str] = (),
    ) -> list[Resolution]:
        """Stop the losing copies of each duplicate that still holds.

        `busy` names the VMs a job or a failover works on, which are left to it.
        `answering` are the hosts that answered their last refresh: each is asked too,
        since a copy started there after its report may hold the newest lease.
        """
        results = await asyncio.gather(*(self._resolve(d, busy, answering) for d in duplicates))
        return [r for r in results if r is not None]

    async def _resolve(
        self, duplicate: Duplicate, busy: Callable[[], Collection[str]], answering: Collection[str]
    ) -> Resolution | None:
        vm_id = duplicate.vm_id
        lock = self._vms.lock(vm_id)
        # A job holding the VM decides where it runs; the next refresh looks again.
        if vm_id in self._resolving or lock.locked() or vm_id in busy():
            return None
        self._resolving.add(vm_id)
        try:
            async with lock:
                if vm_id in busy():
                    return None
                return await self._resolve_locked(duplicate, answering)
        finally:
            self._resolving.discard(vm_id)

    async def _resolve_locked(self, duplicate: Duplicate, answering: Collection[str]) -> Resolution | None:
        vm_id = duplicate.vm_id
        record = self._store.get_vm(vm_id)
        # Not only the hosts of the reports: the recorded host's report may predate the
        # VM's arrival (a migration or failover just recorded), and any host may have
        # started a copy since its report, perhaps holding a newer lease. The copy kept
        # must be the newest of all those running, not of those reported.
        recorded = (record.host,) if record is not None and record.host is not None else ()
        hosts = list(dict.fromkeys((*duplicate.hosts, *recorded, *sorted(answering))))
        seen = await self._observe(hosts, vm_id)
        fresh = find_duplicates(
            {host: active_copies([reported]) for host, reported in seen.items()},
            {vm_id: record.host if record is not None else None},
        )
        if not fresh:
            log.info(
                "VM %s no longer runs on %s at once: nothing to resolve", vm_id, ", ".join(duplicate.hosts)
            )
            return None
        decision = fresh[0]
        stopped = [host for host in decision.stop if await self._stop(host, vm_id)]
        if not stopped:
            return None
        name = record.name if record is not None else seen[decision.keep].name
        incident = incident_for(name, decision, stopped, self._clock())
        if record is not None:
            kept = self._kept_record(record, decision.keep, seen[decision.keep])
            # Through the VM service, as jobs write: a refresh with an inventory on its
            # way then knows the record is newer than what it carries.
            self._vms.record(replace(kept, incident=incident))
        log.warning("duplicate copy resolved: %s", incident.detail)
        self._bus.emit("incident", incident.detail, host=decision.keep, vm=name)
        return Resolution(vm_id, decision.keep, tuple(stopped))

    async def _observe(self, hosts: Sequence[str], vm_id: str) -> dict[str, ReportedVm]:
        """What each host says of the VM now; hosts that do not have it or do not answer are left out."""

        async def ask(host: str) -> tuple[str, ReportedVm | None]:
            address = self._address(host)
            if address is None:
                return host, None
            try:
                return host, await self._agents.get_vm(host, address, vm_id)
            except ManagerError:
                return host, None

        answers = await asyncio.gather(*(ask(host) for host in hosts))
        return {host: reported for host, reported in answers if reported is not None}

    async def _stop(self, host: str, vm_id: str) -> bool:
        """Turn the copy on `host` off and have the host forget it; whether it is gone."""
        address = self._address(host)
        if address is None:
            return False
        turned_off = True
        try:
            await self._agents.operate_vm(host, address, vm_id, VmOperation.TURN_OFF)
        except NotFoundError:
            return True  # fenced meanwhile: the host dropped it by itself
        except FailedPreconditionError as error:
            # Perhaps it stopped by itself meanwhile (fenced at its next write): the delete tells.
            turned_off = False
            log.info("turning off the copy of VM %s on host %s: %s", vm_id, host, error.message)
        except ManagerError as error:
            log.warning(
                "cannot turn off the duplicate copy of VM %s on host %s: %s", vm_id, host, error.message
            )
            return False
        try:
            await self._agents.delete_vm(host, address, vm_id)
        except NotFoundError:
            pass
        except ManagerError as error:
            log.warning(
                "cannot delete the duplicate copy of VM %s on host %s: %s", vm_id, host, error.message
            )
            # Turned off, it no longer runs, though its host still lists it at rest.
            return turned_off
        return True

    def _kept_record(self, record: VmRecord, keep: str, reported: ReportedVm) -> VmRecord:
        """The record, on the kept host as its copy is there (as a refresh records it)."""
        if record.host == keep:
            return record
        result = reconcile(
            keep,
            [record],
            [reported],
            now=self._clock(),
        )
        return result.updates[0] if result.updates else record

    def _address(self, host: str) -> str | None:
        record = self._store.get_host(host)
        return record.address if record is not None and record.address else None
