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
# VM names whose migrations the fake scripts to fail (see FakeManager._migration_steps).
NOT_CONVERGING_PREFIX = "busy"
DESTINATION_DIES_PREFIX = "doomed"
MIB = 2**20


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


def canned_migration_hosts() -> list[manager_pb2.Host]:
    """A second healthy node of hv1 with every kind of storage, for migration tests."""
    node3 = manager_pb2.Host()
    node3.CopyFrom(canned_hosts()[0])
    node3.name, node3.address, node3.vm_count = "node3", "127.0.0.1:7004", 0
    del node3.disks[:]
    node3.disks.extend(
        [
            common_pb2.LocalDisk(name="C", capacity_bytes=2**37, free_bytes=2**36),
            common_pb2.LocalDisk(name="Data", capacity_bytes=2**38, free_bytes=2**38),
        ]
    )
    node3.volumes.extend(
        [
            common_pb2.SharedVolume(name="Volume2", kind=common_pb2.STORAGE_KIND_CSV, capacity_bytes=2**40),
            common_pb2.SharedVolume(name="Data", kind=common_pb2.STORAGE_KIND_LUN, capacity_bytes=2**39),
        ]
    )
    return [node3]


def _copy(message):
    duplicate = type(message)()
    duplicate.CopyFrom(message)
    return duplicate


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
        self.migrations: dict[str, manager_pb2.Migration] = {}
        # Migrations advance one scripted step per GetMigration: id -> the steps still ahead.
        self.migration_steps: dict[str, list[manager_pb2.Migration]] = {}
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
            processor_compatibility=request.processor_compatibility,
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

    def UpdateVm(self, request, context):
        self.calls.append(("UpdateVm", request))
        vm = self._vm_or_abort(request.name, context)
        if request.HasField("processor_compatibility"):
            if vm.state != common_pb2.VM_STATE_STOPPED:
                state = common_pb2.VmState.Name(vm.state).removeprefix("VM_STATE_").lower()
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"processor compatibility of VM {vm.name} can change only while it is stopped "
                    f"(it is {state})",
                )
            vm.processor_compatibility = request.processor_compatibility
        return manager_pb2.UpdateVmResponse(job=self._running_job("update_vm", vm.name), vm=vm)

    # Migrations.

    def _vm_or_abort(self, name: str, context) -> manager_pb2.Vm:
        if name not in self.vms:
            context.abort(grpc.StatusCode.NOT_FOUND, f"VM {name} does not exist")
        return self.vms[name]

    def _host_or_abort(self, name: str, context) -> manager_pb2.Host:
        if name not in self.hosts:
            context.abort(grpc.StatusCode.NOT_FOUND, f"host {name} does not exist")
        return self.hosts[name]

    def _incompatibilities(self, vm: manager_pb2.Vm, destination: manager_pb2.Host) -> list[str]:
        """What the real destinations' compatibility check reports, one sentence each."""
        source = self.hosts[vm.host]
        reasons = []
        if destination.cpu.vendor != source.cpu.vendor:
            reasons.append(f"its processor is {destination.cpu.vendor}, the VM runs on {source.cpu.vendor}")
        elif not vm.processor_compatibility:
            missing = [f for f in source.cpu.features if f not in destination.cpu.features]
            if missing:
                reasons.append(f"its processor lacks {', '.join(missing)}")
        if destination.memory_free_mb < vm.memory_mb:
            reasons.append(f"it has {destination.memory_free_mb} MB free, the VM needs {vm.memory_mb} MB")
        networks = {n.name for n in destination.networks}
        reasons += [f"it has no virtual network or port group {n}" for n in vm.networks if n not in networks]
        volumes = {(v.kind, v.name) for v in destination.volumes}
        if (
            vm.storage.kind != common_pb2.STORAGE_KIND_LOCAL_DISK
            and (vm.storage.kind, vm.storage.name) not in volumes
        ):
            kind = "CSV" if vm.storage.kind == common_pb2.STORAGE_KIND_CSV else "LUN"
            reasons.append(f"it cannot see {kind} {vm.storage.name}")
        return reasons

    def _start_migration(
        self,
        vm: manager_pb2.Vm,
        kind: int,
        destination: str,
        storage: common_pb2.StorageLocation,
        no_converge: int = manager_pb2.NO_CONVERGE_POLICY_UNSPECIFIED,
    ) -> tuple[manager_pb2.Job, manager_pb2.Migration]:
        job = self._add_job(
            "migrate_vm", vm.name, manager_pb2.JOB_STATE_RUNNING, message=f"migrating {vm.name}"
        )
        migration = manager_pb2.Migration(
            id=f"mig-{len(self.migrations) + 1}",
            vm=vm.name,
            vm_id=vm.id,
            kind=kind,
            state=manager_pb2.MIGRATION_STATE_QUEUED,
            phase="queued",
            source=vm.host,
            destination=destination,
            storage=storage,
            job_id=job.id,
            created_at=stamp(1_700_000_400),
            updated_at=stamp(1_700_000_400),
        )
        self.migrations[migration.id] = migration
        self.migration_steps[migration.id] = self._migration_steps(vm, migration, no_converge)
        vm.migration_id = migration.id
        return job, migration

    def _migration_steps(
        self, vm: manager_pb2.Vm, start: manager_pb2.Migration, no_converge: int
    ) -> list[manager_pb2.Migration]:
        """The records GetMigration returns one after the other, ending completed or failed."""
        memory = vm.memory_mb * MIB
        if start.kind == manager_pb2.MIGRATION_KIND_STORAGE:
            disk = vm.disk_gb * 2**30
            figures = [
                ("disk_copy", 0, disk // 2, disk // 2, 380.0),
                ("pre_copy", 1, disk + memory // 2, memory // 2, 400.0),
                ("blackout", 2, disk + memory + MIB, MIB, 410.0),
            ]
            last = {"passes": 2, "bytes": disk + memory + MIB, "duration_ms": 9_100, "blackout_ms": 41}
        elif start.kind == manager_pb2.MIGRATION_KIND_QUICK:
            figures = [("saving", 0, 0, 0, 0.0), ("restoring", 0, 0, 0, 0.0)]
            last = {"passes": 0, "bytes": 0, "duration_ms": 3_200, "blackout_ms": 3_150}
        else:
            figures = [
                ("preparing", 0, 0, memory, 0.0),
                ("pre_copy", 1, memory // 2, memory // 2, 402.5),
                ("pre_copy", 2, memory + memory // 8, memory // 16, 415.0),
                ("blackout", 3, memory + memory // 8 + memory // 16, 0, 415.0),
            ]
            last = {"passes": 3, "bytes": memory + memory // 8 + memory // 16, "duration_ms": 5_230}
            last["blackout_ms"] = 38
        steps = []
        for phase, passes, sent, remaining, rate in figures:
            step = _copy(start)
            step.state, step.phase, step.passes = manager_pb2.MIGRATION_STATE_RUNNING, phase, passes
            step.bytes, step.bytes_remaining, step.mb_per_s = sent, remaining, rate
            steps.append(step)
        final = _copy(steps[-1])
        final.phase = "completed"
        final.state = manager_pb2.MIGRATION_STATE_COMPLETED
        final.bytes, final.bytes_remaining = last["bytes"], 0
        final.passes, final.duration_ms, final.blackout_ms = (
            last["passes"],
            last["duration_ms"],
            last["blackout_ms"],
        )
        final.mb_per_s = final.bytes / MIB / (final.duration_ms / 1000) if final.bytes else 0.0
        if start.kind != manager_pb2.MIGRATION_KIND_QUICK:
            final.memory_digest = final.resumed_digest = f"sha256:{vm.id}-at-pause"
        if vm.name.startswith(NOT_CONVERGING_PREFIX):
            steps = steps[:2]
            final = _copy(steps[-1])
            final.passes, final.bytes_remaining = 10, memory // 2
            if no_converge == manager_pb2.NO_CONVERGE_POLICY_QUICK:
                final.state, final.phase, final.kind = (
                    manager_pb2.MIGRATION_STATE_COMPLETED,
                    "completed",
                    manager_pb2.MIGRATION_KIND_QUICK,
                )
                final.fell_back_to_quick = True
                final.bytes_remaining, final.duration_ms, final.blackout_ms = 0, 8_400, 3_100
            else:
                final.state, final.phase = manager_pb2.MIGRATION_STATE_FAILED, "failed"
                final.error = (
                    f"live migration of VM {vm.name} did not converge after 10 passes (the guest dirties "
                    f"memory faster than the link carries it); it keeps running on {vm.host}"
                )
        elif vm.name.startswith(DESTINATION_DIES_PREFIX):
            steps = steps[:2]
            final = _copy(steps[-1])
            final.state, final.phase = manager_pb2.MIGRATION_STATE_FAILED, "failed"
            final.error = (
                f"host {start.destination} stopped answering during the memory copy; "
                f"VM {vm.name} keeps running on {vm.host}"
            )
        return [*steps, final]

    def _advance(self, migration_id: str) -> manager_pb2.Migration:
        steps = self.migration_steps.get(migration_id)
        if steps:
            migration = steps.pop(0)
            self.migrations[migration_id] = migration
            job = self.jobs[migration.job_id]
            finished = migration.state in (
                manager_pb2.MIGRATION_STATE_COMPLETED,
                manager_pb2.MIGRATION_STATE_FAILED,
            )
            job.progress = 100 if finished else min(95, job.progress + 20)
            if finished:
                failed = migration.state == manager_pb2.MIGRATION_STATE_FAILED
                job.state = manager_pb2.JOB_STATE_FAILED if failed else manager_pb2.JOB_STATE_COMPLETED
                job.error = migration.error
                vm = self.vms.get(migration.vm)
                if vm is not None:
                    vm.migration_id = ""
                    if not failed:
                        vm.host = migration.destination
                        if migration.storage.name:
                            vm.storage.CopyFrom(migration.storage)
        return self.migrations[migration_id]

    def MigrateVm(self, request, context):
        self.calls.append(("MigrateVm", request))
        with self.lock:
            vm = self._vm_or_abort(request.name, context)
            destination = self._host_or_abort(request.host, context)
            if vm.host == destination.name:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"VM {vm.name} is already on {vm.host}")
            reasons = self._incompatibilities(vm, destination)
            if reasons:
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"host {destination.name} cannot take VM {vm.name}: {'; '.join(reasons)}",
                )
            cluster = self.clusters.get(destination.cluster)
            live_offered = cluster is None or cluster.profile != common_pb2.PROFILE_HYPERV_2008
            kind = (
                manager_pb2.MIGRATION_KIND_LIVE
                if live_offered and not request.quick
                else manager_pb2.MIGRATION_KIND_QUICK
            )
            job, migration = self._start_migration(
                vm, kind, destination.name, vm.storage, request.no_converge
            )
        return manager_pb2.MigrateVmResponse(job=job, migration=migration)

    def MigrateVmStorage(self, request, context):
        self.calls.append(("MigrateVmStorage", request))
        with self.lock:
            vm = self._vm_or_abort(request.name, context)
            destination = self._host_or_abort(request.host or vm.host, context)
            storage = request.storage
            if not storage.name:
                if destination.name == vm.host:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "storage: name where the files go")
                # The manager's choice: the destination's first shared volume.
                storage = common_pb2.StorageLocation(
                    kind=destination.volumes[0].kind, name=destination.volumes[0].name
                )
            job, migration = self._start_migration(
                vm, manager_pb2.MIGRATION_KIND_STORAGE, destination.name, storage
            )
        return manager_pb2.MigrateVmStorageResponse(job=job, migration=migration)

    def ListMigrations(self, request, context):
        self.calls.append(("ListMigrations", request))
        newest_first = sorted(self.migrations.values(), key=lambda m: int(m.id.split("-")[1]), reverse=True)
        return manager_pb2.ListMigrationsResponse(migrations=newest_first[: request.limit or 50])

    def GetMigration(self, request, context):
        with self.lock:
            if request.id not in self.migrations:
                context.abort(grpc.StatusCode.NOT_FOUND, f"migration {request.id} does not exist")
            return manager_pb2.GetMigrationResponse(migration=self._advance(request.id))


def start_fake_manager() -> tuple[grpc.Server, FakeManager, int]:
    fake = FakeManager()
    server, port = serve(fake)
    return server, fake, port


def serve(fake: FakeManager, port: int = 0) -> tuple[grpc.Server, int]:
    """Serve `fake` on a free port, or on `port` again (a manager that restarted)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    manager_pb2_grpc.add_ManagerServiceServicer_to_server(fake, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, port
