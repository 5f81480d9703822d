"""An in-process fake ManagerService with canned hosts, clusters, VMs and jobs.

It answers the way the real manager's contract says (NOT_FOUND with a sentence, jobs
streamed to their end) so the CLI can be tested without a cluster. Requests are kept
in `calls` so tests can check what the CLI sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
from google.protobuf import timestamp_pb2

from havm.v1 import agent_pb2, common_pb2, manager_pb2, manager_pb2_grpc

FAILED_START_ERROR = "VM db1 cannot start: no host of cluster hv1 has 4096 MB free"


def stamp(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


def canned_hosts() -> list[manager_pb2.Host]:
    volume = common_pb2.SharedVolume(
        name="Volume1", kind=common_pb2.STORAGE_KIND_CSV, capacity_bytes=2**40, free_bytes=2**39
    )
    cpu = common_pb2.Cpu(
        vendor="GenuineIntel", model="Xeon E5520", features=["sse4_2", "popcnt"], cores=8, mhz=2266
    )
    node1 = manager_pb2.Host(
        name="node1",
        cluster="hv1",
        profile=common_pb2.PROFILE_HYPERV_2008R2,
        state=manager_pb2.HOST_STATE_OK,
        address="127.0.0.1:7001",
        cpu=cpu,
        memory_mb=16384,
        memory_free_mb=12288,
        vm_count=1,
        disks=[common_pb2.LocalDisk(name="C", capacity_bytes=2**37, free_bytes=2**36)],
        networks=[
            common_pb2.Network(
                name="Public", kind=common_pb2.NETWORK_KIND_VIRTUAL_NETWORK, bound_to="PCI bus 3", vlan_id=10
            )
        ],
        volumes=[volume],
        rating=4.5,
        last_refresh=stamp(1_700_000_000),
    )
    node2 = manager_pb2.Host(
        name="node2",
        cluster="hv1",
        profile=common_pb2.PROFILE_HYPERV_2008R2,
        state=manager_pb2.HOST_STATE_NOT_RESPONDING,
        address="127.0.0.1:7002",
        cpu=cpu,
        memory_mb=16384,
        memory_free_mb=16384,
        volumes=[volume],
        state_reason="no heartbeat for 5 s and the probe failed",
    )
    esx1 = manager_pb2.Host(
        name="esx1",
        profile=common_pb2.PROFILE_ESX,
        state=manager_pb2.HOST_STATE_MAINTENANCE,
        address="127.0.0.1:7003",
        cpu=common_pb2.Cpu(vendor="AuthenticAMD", model="Opteron 2384", cores=4, mhz=2700),
        memory_mb=8192,
        memory_free_mb=8192,
        networks=[
            common_pb2.Network(
                name="VM Network", kind=common_pb2.NETWORK_KIND_PORT_GROUP, bound_to="vSwitch0"
            )
        ],
    )
    return [node1, node2, esx1]


def canned_clusters() -> list[manager_pb2.Cluster]:
    return [
        manager_pb2.Cluster(
            name="hv1",
            profile=common_pb2.PROFILE_HYPERV_2008R2,
            nodes=["node1", "node2"],
            reserve=1,
            state=manager_pb2.CLUSTER_STATE_OVERCOMMITTED,
            volumes=[
                common_pb2.SharedVolume(
                    name="Volume1", kind=common_pb2.STORAGE_KIND_CSV, capacity_bytes=2**40, free_bytes=2**39
                )
            ],
        ),
        manager_pb2.Cluster(
            name="old", profile=common_pb2.PROFILE_HYPERV_2008, state=manager_pb2.CLUSTER_STATE_OK
        ),
    ]


def canned_vms() -> list[manager_pb2.Vm]:
    return [
        manager_pb2.Vm(
            id="vm-1",
            name="web1",
            host="node1",
            state=common_pb2.VM_STATE_RUNNING,
            highly_available=True,
            status=common_pb2.VM_CONFIG_STATUS_OK,
            memory_mb=2048,
            cpus=2,
            disk_gb=20,
            storage=common_pb2.StorageLocation(kind=common_pb2.STORAGE_KIND_CSV, name="Volume1"),
            networks=["Public"],
            created_at=stamp(1_700_000_100),
        ),
        manager_pb2.Vm(
            id="vm-2",
            name="db1",
            state=common_pb2.VM_STATE_STOPPED,
            highly_available=True,
            status=common_pb2.VM_CONFIG_STATUS_UNSUPPORTED_CLUSTER_CONFIGURATION,
            status_reasons=["its files are on local disk C, not on cluster storage"],
            memory_mb=4096,
            cpus=1,
            disk_gb=40,
            storage=common_pb2.StorageLocation(kind=common_pb2.STORAGE_KIND_LOCAL_DISK, name="C"),
            imported=True,
            reason="",
        ),
    ]


class FakeManager(manager_pb2_grpc.ManagerServiceServicer):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hosts = {h.name: h for h in canned_hosts()}
        self.clusters = {c.name: c for c in canned_clusters()}
        self.vms = {v.name: v for v in canned_vms()}
        self.jobs: dict[str, manager_pb2.Job] = {}
        # Jobs that stream progress before they finish: id -> final job.
        self.finals: dict[str, manager_pb2.Job] = {}
        self.calls: list[tuple[str, object]] = []
        self._add_job("refresh", "hv1", manager_pb2.JOB_STATE_COMPLETED, message="refreshed 2 hosts")
        self._add_job("start_vm", "db1", manager_pb2.JOB_STATE_FAILED, error=FAILED_START_ERROR)

    # Jobs.

    def _add_job(
        self, kind: str, target: str, state: int, *, message: str = "", error: str = ""
    ) -> manager_pb2.Job:
        job_id = f"job-{len(self.jobs) + 1}"
        job = manager_pb2.Job(
            id=job_id,
            kind=kind,
            target=target,
            state=state,
            progress=100 if state != manager_pb2.JOB_STATE_RUNNING else 0,
            message=message,
            error=error,
            created_at=stamp(1_700_000_200),
            updated_at=stamp(1_700_000_201),
        )
        self.jobs[job_id] = job
        return job

    def _running_job(self, kind: str, target: str, *, message: str = "", error: str = "") -> manager_pb2.Job:
        """A job that WatchJob reports at 0 %, 50 %, then finished (failed if `error`)."""
        job = self._add_job(kind, target, manager_pb2.JOB_STATE_RUNNING, message=f"{kind} {target}")
        final = manager_pb2.Job()
        final.CopyFrom(job)
        final.state = manager_pb2.JOB_STATE_FAILED if error else manager_pb2.JOB_STATE_COMPLETED
        final.progress = 100
        final.message = message or f"{kind} {target} done"
        final.error = error
        self.finals[job.id] = final
        return job

    # Reads.

    def GetStatus(self, request, context):
        self.calls.append(("GetStatus", request))
        return manager_pb2.GetStatusResponse(
            manager_version="0.1.0-fake",
            hosts_total=len(self.hosts),
            hosts_ok=1,
            vms_total=len(self.vms),
            vms_running=1,
            clusters=list(self.clusters.values()),
            jobs_running=0,
        )

    def ListHosts(self, request, context):
        self.calls.append(("ListHosts", request))
        hosts = [h for h in self.hosts.values() if not request.cluster or h.cluster == request.cluster]
        return manager_pb2.ListHostsResponse(hosts=hosts)

    def GetHost(self, request, context):
        if request.name == "sleepy":
            time.sleep(1.0)  # longer than the short --timeout the test gives
        if request.name not in self.hosts:
            context.abort(grpc.StatusCode.NOT_FOUND, f"host {request.name} does not exist")
        return manager_pb2.GetHostResponse(host=self.hosts[request.name])

    def ListClusters(self, request, context):
        return manager_pb2.ListClustersResponse(clusters=list(self.clusters.values()))

    def GetCluster(self, request, context):
        if request.name not in self.clusters:
            context.abort(grpc.StatusCode.NOT_FOUND, f"cluster {request.name} does not exist")
        return manager_pb2.GetClusterResponse(cluster=self.clusters[request.name])

    def ListVms(self, request, context):
        self.calls.append(("ListVms", request))
        vms = [v for v in self.vms.values() if not request.host or v.host == request.host]
        return manager_pb2.ListVmsResponse(vms=vms)

    def GetVm(self, request, context):
        if request.name not in self.vms:
            context.abort(grpc.StatusCode.NOT_FOUND, f"VM {request.name} does not exist")
        return manager_pb2.GetVmResponse(vm=self.vms[request.name])

    def ListJobs(self, request, context):
        self.calls.append(("ListJobs", request))
        jobs = sorted(self.jobs.values(), key=lambda j: int(j.id.split("-")[1]), reverse=True)
        return manager_pb2.ListJobsResponse(jobs=jobs[: request.limit or 50])

    def GetJob(self, request, context):
        if request.id not in self.jobs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.id} does not exist")
        return manager_pb2.GetJobResponse(job=self.jobs[request.id])

    def WatchJob(self, request, context) -> Iterator[manager_pb2.WatchJobResponse]:
        if request.id not in self.jobs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.id} does not exist")
        job = self.jobs[request.id]
        yield manager_pb2.WatchJobResponse(job=job)
        if job.target == "slow":
            # Never finishes: for tests that interrupt a waiting command.
            while context.is_active():
                time.sleep(0.05)
            return
        final = self.finals.pop(request.id, None)
        if final is None:
            return
        halfway = manager_pb2.Job()
        halfway.CopyFrom(job)
        halfway.progress = 50
        yield manager_pb2.WatchJobResponse(job=halfway)
        self.jobs[request.id] = final
        yield manager_pb2.WatchJobResponse(job=final)

    # Changes.

    def RefreshCluster(self, request, context):
        self.calls.append(("RefreshCluster", request))
        if request.target == "node2":
            context.abort(grpc.StatusCode.UNAVAILABLE, "host node2 does not answer at 127.0.0.1:7002")
        if request.target == "slow":
            job = self._add_job("refresh", "slow", manager_pb2.JOB_STATE_RUNNING, message="refreshing")
            return manager_pb2.RefreshClusterResponse(job=job)
        if request.target and request.target not in self.clusters and request.target not in self.hosts:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no cluster or host is named {request.target}")
        job = self._running_job("refresh", request.target or "all", message="refreshed 2 hosts")
        return manager_pb2.RefreshClusterResponse(job=job)

    def CreateVm(self, request, context):
        self.calls.append(("CreateVm", request))
        if request.name in self.vms:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"a VM named {request.name} already exists")
        if request.memory_mb > 65536:
            job = self._running_job(
                "create_vm",
                request.name,
                error=f"no host has {request.memory_mb} MB free for VM {request.name}",
            )
            return manager_pb2.CreateVmResponse(job=job)
        vm = manager_pb2.Vm(
            id=f"vm-{len(self.vms) + 1}",
            name=request.name,
            host=request.host or "node1",
            state=common_pb2.VM_STATE_STOPPED if request.no_start else common_pb2.VM_STATE_RUNNING,
            highly_available=request.highly_available,
            status=common_pb2.VM_CONFIG_STATUS_OK,
            memory_mb=request.memory_mb,
            cpus=request.cpus or 1,
            disk_gb=request.disk_gb or 20,
            storage=request.storage,
            networks=list(request.networks),
            created_at=stamp(1_700_000_300),
        )
        self.vms[vm.name] = vm
        job = self._running_job("create_vm", request.name)
        return manager_pb2.CreateVmResponse(job=job, vm=vm)

    def OperateVm(self, request, context):
        self.calls.append(("OperateVm", request))
        if request.name not in self.vms:
            context.abort(grpc.StatusCode.NOT_FOUND, f"VM {request.name} does not exist")
        kind = agent_pb2.VmOperation.Name(request.operation).removeprefix("VM_OPERATION_").lower()
        if request.name == "db1" and request.operation == agent_pb2.VM_OPERATION_START:
            job = self._running_job(f"{kind}_vm", request.name, error=FAILED_START_ERROR)
        else:
            job = self._running_job(f"{kind}_vm", request.name)
        return manager_pb2.OperateVmResponse(job=job)

    def DeleteVm(self, request, context):
        self.calls.append(("DeleteVm", request))
        if request.name not in self.vms:
            context.abort(grpc.StatusCode.NOT_FOUND, f"VM {request.name} does not exist")
        del self.vms[request.name]
        return manager_pb2.DeleteVmResponse(job=self._running_job("delete_vm", request.name))


def start_fake_manager() -> tuple[grpc.Server, FakeManager, int]:
    fake = FakeManager()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    manager_pb2_grpc.add_ManagerServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, fake, port
