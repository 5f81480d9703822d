"""A highly available VM's failover policy, changed by an operator (`vm set`).

The policy is the failover cluster's group properties of the VM (owners, threshold,
failback): it lives in the manager, as a cluster group's properties live in the
cluster rather than on a host, so no agent is asked and the change is recorded at
once. The job is there so that every change reads like every other one.
"""

from __future__ import annotations

from dataclasses import replace

from manager.app.jobs import JobBook, JobHandle
from manager.app.vms import VmService
from manager.core.errors import NotFoundError
from manager.core.failover_policy import check_policy, describe_policy
from manager.core.model import FailoverPolicy, JobRecord, VmRecord
from manager.core.store import Store


class VmPolicyService:
    def __init__(self, store: Store, jobs: JobBook, vms: VmService) -> None:
        self._store = store
        self._jobs = jobs
        self._vms = vms

    def update(self, name: str, policy: FailoverPolicy) -> tuple[JobRecord, VmRecord]:
        vm = self._store.get_vm_by_name(name)
        if vm is None:
            raise NotFoundError(f"VM {name} does not exist")
        nodes = self._cluster_nodes(vm)
        check_policy(policy, highly_available=vm.highly_available, cluster_nodes=nodes)
        vm = replace(vm, policy=policy)
        self._vms.record(vm)
        summary = describe_policy(policy, len(nodes))

        async def done(job: JobHandle) -> str:
            return f"VM {vm.name}: {summary}"

        return self._jobs.start(
            "update_vm", vm.name, f"Changing the failover policy of VM {vm.name}", done
        ), vm

    def _cluster_nodes(self, vm: VmRecord) -> tuple[str, ...]:
        host = self._store.get_host(vm.host) if vm.host else None
        cluster = self._store.get_cluster(host.cluster) if host is not None and host.cluster else None
        return cluster.nodes if cluster is not None else ()
