"""Converting a VM's pass-through disk to a virtual disk (`havm vm convert-disk`).

VMM converts a pass-through disk in the VM's hardware configuration before a move the
disk cannot follow. Here the VM's host copies the disk's blocks into a virtual disk
file beside the VM's system disk and stops passing the disk through (ConvertDisk, a
stream of progress); the manager runs it as a job whose progress follows the copy and
records the VM as its host reports it afterwards. The VM is claimed meanwhile, so that
nothing starts or moves it. A manager that stops mid-copy cancels the stream, and the
host leaves the VM as it was; a refresh finds it either way.
"""

from __future__ import annotations

from dataclasses import replace

from manager.app.claims import Claim
from manager.app.jobs import JobBook, JobHandle
from manager.app.vms import VmService
from manager.core.agent_port import AgentPort
from manager.core.copy_progress import MB, copy_percent, copying
from manager.core.errors import ManagerError, NotFoundError
from manager.core.model import DiskConversionProgress, JobRecord, StorageLocation
from manager.core.operations import check_convertible, disk_label
from manager.core.reconcile import record_observed
from manager.core.store import Store


class DiskConversions:
    def __init__(self, store: Store, agents: AgentPort, jobs: JobBook, vms: VmService) -> None:
        self._store = store
        self._agents = agents
        self._jobs = jobs
        self._vms = vms

    def convert(self, name: str, disk: StorageLocation | None) -> JobRecord:
        vm = self._store.get_vm_by_name(name)
        if vm is None:
            raise NotFoundError(f"VM {name} does not exist")
        chosen = check_convertible(vm, disk)
        self._vms.host_address(vm)  # its host must answer: refused now rather than in the job
        self._vms.claims.claim(vm.id, Claim.JOB)
        try:
            return self._jobs.start(
                "convert_disk",
                vm.name,
                f"Converting pass-through disk {disk_label(chosen)} of VM {vm.name} to a virtual disk",
                lambda job: self._work(job, vm.id, chosen),
            )
        except BaseException:
            self._vms.claims.release(vm.id, Claim.JOB)
            raise

    async def _work(self, job: JobHandle, vm_id: str, disk: StorageLocation) -> str:
        try:
            vm = self._store.get_vm(vm_id)
            if vm is None:
                raise NotFoundError(f"VM {vm_id} was deleted")
            check_convertible(vm, disk)
            host, address = self._vms.host_address(vm)
            last: DiskConversionProgress | None = None
            stream = self._agents.convert_disk(host, address, vm.id, disk)
            try:
                async for progress in stream:
                    last = progress
                    if progress.vm is None:
                        job.progress(
                            copy_percent(progress.bytes_copied, progress.bytes_total, 1, 99),
                            copying(progress.bytes_copied, progress.bytes_total, progress.mb_per_s),
                        )
            finally:
                await stream.aclose()
            if last is None or last.vm is None:
                raise ManagerError(f"host {host} ended the conversion without an answer")
            reported = last.vm
            async with self._vms.lock(vm_id):
                current = self._store.get_vm(vm_id) or vm
                vm = replace(
                    record_observed(current, reported.state, reported.reason),
                    passthrough_disks=reported.passthrough_disks,
                    data_disks=reported.data_disks,
                )
                self._vms.record(vm)
            made = next((d.file for d in vm.data_disks if d.converted_from == disk), "?")
            copied = (
                f"{last.bytes_total / MB:,.1f} MB"
                if last.bytes_total >= MB
                else f"{last.bytes_total:,} bytes"
            )
            return (
                f"VM {vm.name}: pass-through disk {disk_label(disk)} converted to virtual disk {made} "
                f"({copied} of written blocks copied)"
            )
        finally:
            self._vms.claims.release(vm_id, Claim.JOB)
