"""An administrator's changes to the running host: its networks and the SAN it sees.

What the host is changes here, behind the manager's back, as on a real host: the
decision is core.host_changes', the kept copy is the HostChangesStore's (a file in the
state directory), and HostedVms, the one owner of the host's description, serves the
new one to every flow from then on (a VM created, arriving or checked afterwards sees
it). The manager is not told; it reads the host's inventory at its next refresh.

Each change to the host is synchronous: with no await between the decision and the
new description, two changes, or a change and a VM's creation, cannot interleave. A
change to a VM's cluster group is the VM's (app.vm_settings): it waits for the VM's lock.
"""

from __future__ import annotations

import logging

from node_agent.app import vm_settings
from node_agent.app.hosted_vms import HostedVms
from node_agent.core.config import HostConfig, NetworkSpec, VolumeKind, VolumeSpec
from node_agent.core.errors import ConfigError, StorageFault
from node_agent.core.host_changes import (
    HostChange,
    HostChangesStore,
    NetworkUpdate,
    add_network,
    add_volume,
    changes_of,
    remove_network,
    remove_volume,
    update_network,
    with_changes,
)
from node_agent.core.views import VmView
from node_agent.core.vm import ClusterResource, StorageKind, StorageRef

log = logging.getLogger(__name__)


def with_kept_changes(config: HostConfig, store: HostChangesStore) -> HostConfig:
    """The configuration file's host with the changes kept from earlier runs.

    Kept changes that cannot be read are one log line, and the configuration file's
    networks and volumes: a damaged file must never keep the host from starting.
    """
    try:
        changes = store.load()
        if changes is None:
            return config
        changed = with_changes(config, changes)
    except ConfigError as exc:
        log.error(
            "the host's kept changes are ignored (%s); "
            "it has the networks and volumes of its configuration file",
            exc.message,
        )
        return config
    log.info(
        "networks and volumes as last changed on the host: %d network(s), %d volume(s)",
        len(changed.networks),
        len(changed.volumes),
    )
    return changed


class HostAdministration:
    """The changes an administrator makes on this host, applied and kept."""

    def __init__(self, vms: HostedVms, store: HostChangesStore | None) -> None:
        self._vms = vms
        # None: the changes last as long as the process (an agent without a state directory).
        self._store = store

    def add_network(self, network: NetworkSpec) -> tuple[VmView, ...]:
        return self._apply(add_network(self._vms.config, network))

    def remove_network(self, name: str) -> tuple[VmView, ...]:
        """The VMs whose network adapters the removal disconnected."""
        return self._apply(remove_network(self._vms.config, name, self._vms.specs()))

    def update_network(self, name: str, update: NetworkUpdate) -> tuple[VmView, ...]:
        """The VMs a rename disconnected (connected by the old name)."""
        return self._apply(update_network(self._vms.config, name, update, self._vms.specs()))

    def add_volume(self, volume: VolumeSpec) -> None:
        change = add_volume(self._vms.config, volume)
        try:
            self._vms.files.prepare_storage(StorageRef(StorageKind(volume.kind.value), volume.name))
        except OSError as exc:
            raise StorageFault(
                f"{volume.kind.value} {volume.name} cannot be prepared on the SAN: {exc}"
            ) from None
        self._apply(change)

    def remove_volume(self, name: str, kind: VolumeKind | None) -> None:
        # Skeletons count: a VM arriving by live migration puts its files there.
        self._apply(remove_volume(self._vms.config, name, kind, self._vms.specs(arriving=True)))

    async def add_cluster_resource(self, vm_id: str, resource: ClusterResource) -> VmView:
        """Add a resource to a highly available VM's cluster group; the VM afterwards."""
        return await vm_settings.add_cluster_resource(self._vms, vm_id, resource)

    async def remove_cluster_resource(self, vm_id: str, name: str) -> VmView:
        return await vm_settings.remove_cluster_resource(self._vms, vm_id, name)

    def _apply(self, change: HostChange) -> tuple[VmView, ...]:
        if self._store is not None:
            try:
                self._store.save(changes_of(change.config))
            except OSError as exc:
                # Not kept, not applied: the host would lose the change at its next start.
                raise StorageFault(
                    f"the change cannot be kept in the agent's state directory: {exc}"
                ) from None
        self._vms.reconfigure(change.config)
        log.info("changed on the host: %s", change.summary)
        disconnected = (self._vms.hosted(vm_id) for vm_id in change.disconnected)
        return tuple(vm.view() for vm in disconnected if vm is not None)
