"""Changing a VM's settings on this host: UpdateVm, and the resources of its cluster group.

Both rewrite the VM's configuration (vm.json, stored with its files) so that the change
moves with the VM and outlives a restart. Each holds the VM's lock, as every operation
does, so that a change cannot overtake a power operation, a storage move or a live
migration starting (which refuses a locked VM), nor two changes lose one another; the
decisions are core's (core.vm_devices, core.cluster_group).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from node_agent.app.guests import HostedVm
from node_agent.app.hosted_vms import HostedVms
from node_agent.core.cluster_group import with_resource, without_resource
from node_agent.core.views import VmView
from node_agent.core.vm import ClusterResource, VmSpec
from node_agent.core.vm_devices import VmUpdate, updated_spec

log = logging.getLogger(__name__)


async def update_settings(vms: HostedVms, vm_id: str, update: VmUpdate) -> VmView:
    """Apply UpdateVm's changes, all or none; the VM as it is afterwards."""

    def change(vm: HostedVm) -> VmSpec:
        spec = updated_spec(vm.spec, vm.state, update, vms.config, vms.others(vm.spec))
        if spec.passthrough_disks != vm.spec.passthrough_disks:
            vms.check_passthrough_files(spec, "passthrough_disks")
        return spec

    return await _rewrite(vms, vm_id, change)


async def add_cluster_resource(vms: HostedVms, vm_id: str, resource: ClusterResource) -> VmView:
    return await _rewrite(vms, vm_id, lambda vm: with_resource(vm.spec, resource))


async def remove_cluster_resource(vms: HostedVms, vm_id: str, name: str) -> VmView:
    return await _rewrite(vms, vm_id, lambda vm: without_resource(vm.spec, name))


async def _rewrite(vms: HostedVms, vm_id: str, change: Callable[[HostedVm], VmSpec]) -> VmView:
    vm = vms.operable(vm_id)
    async with vm.lock:
        vms.check_still_here(vm)
        vms.check_not_migrating(vm)
        spec = change(vm)
        if spec == vm.spec:
            return vm.view()
        await asyncio.to_thread(vms.files.write_vm_config, vm.vm_dir, spec)
        before, vm.spec = vm.spec, spec
        vms.persist(vm)
        log.info("VM %s: configuration changed (%s)", vm.label, _changes(before, spec))
        return vm.view()


def _changes(before: VmSpec, after: VmSpec) -> str:
    said: list[str] = []
    if before.processor_compatibility != after.processor_compatibility:
        said.append(f"processor compatibility mode {'on' if after.processor_compatibility else 'off'}")
    if before.iso_image != after.iso_image:
        said.append(f"DVD drive: {after.iso_image or 'empty'}")
    if before.passthrough_disks != after.passthrough_disks:
        disks = ", ".join(f"{d.kind.label} {d.name}" for d in after.passthrough_disks)
        said.append(f"pass-through disks: {disks or 'none'}")
    if before.cluster_resources != after.cluster_resources:
        names = ", ".join(r.name for r in after.cluster_resources)
        said.append(f"added cluster resources: {names or 'none'}")
    return "; ".join(said)
