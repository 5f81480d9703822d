"""`havm host network|storage|vm ...`: what an administrator does on a host itself.

On a real cluster an administrator changes a host's virtual networks and the SAN
storage it sees with the host's own tools, may create VMs there and add resources to a
highly available VM's cluster group (Failover Cluster Manager), behind VMM's back;
VMM learns of it only when it refreshes the host. These commands do the same: they ask
the manager only where the host's agent is (GetHost's address) and then call the agent
directly (HostAdminService, and AgentService's CreateVm for `host vm create` and its
inventory to find a VM by name). The
manager is not told: `havm cluster refresh` shows it the change.

Inside a scenario, the program that embeds the CLI hands it a channel to the agent's
in-process address (`AgentChannels`), as it hands it the manager's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Annotated, Any, Protocol, TypeVar, runtime_checkable

import grpc
import typer

from havm.cli import errors, render
from havm.cli.client import ClientSettings
from havm.cli.options import INT32_MAX, OutputFormat, OutputOption, client, global_options
from havm.cli.vm import CpusOption, DiskOption, NetworkOption, StorageOption, parse_storage
from havm.contract.identity import sync_channel
from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2

T = TypeVar("T")
GIB = 1024**3
INT32_MIN = -(2**31)
DEFAULT_DISK_GB = 20
DEFAULT_MEMORY_MB = 1024

_VOLUME_KINDS = {"csv": common_pb2.STORAGE_KIND_CSV, "lun": common_pb2.STORAGE_KIND_LUN}
_VOLUME_LABELS = {"csv": "CSV volume", "lun": "LUN"}
_BY_CODE: dict[grpc.StatusCode, type[errors.ManagerCallError]] = {
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
}

HostArgument = Annotated[str, typer.Argument(metavar="HOST", help="The host, as the manager names it.")]


@runtime_checkable
class AgentChannels(Protocol):
    """A program embedding the CLI (a scenario) that reaches agents its own way."""

    def agent_channel(self, address: str) -> grpc.Channel: ...


class HostAgent:
    """Blocking calls to one host's agent; raises `errors.CliError` subclasses only."""

    def __init__(self, host: str, address: str, settings: ClientSettings, channel: grpc.Channel) -> None:
        self.host, self.address = host, address
        self._timeout = settings.call_timeout_s
        self._channel = channel
        self._admin = agent_pb2_grpc.HostAdminServiceStub(channel)
        self._agent = agent_pb2_grpc.AgentServiceStub(channel)

    def __enter__(self) -> HostAgent:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._channel.close()

    def add_network(self, network: common_pb2.Network) -> agent_pb2.HostAdminServiceAddNetworkResponse:
        request = agent_pb2.HostAdminServiceAddNetworkRequest(network=network)
        return self._call(self._admin.AddNetwork, request)

    def remove_network(self, name: str) -> agent_pb2.HostAdminServiceRemoveNetworkResponse:
        return self._call(
            self._admin.RemoveNetwork, agent_pb2.HostAdminServiceRemoveNetworkRequest(name=name)
        )

    def update_network(
        self, request: agent_pb2.HostAdminServiceUpdateNetworkRequest
    ) -> agent_pb2.HostAdminServiceUpdateNetworkResponse:
        return self._call(self._admin.UpdateNetwork, request)

    def add_volume(self, volume: common_pb2.SharedVolume) -> agent_pb2.HostAdminServiceAddVolumeResponse:
        return self._call(self._admin.AddVolume, agent_pb2.HostAdminServiceAddVolumeRequest(volume=volume))

    def remove_volume(self, name: str, kind: int) -> agent_pb2.HostAdminServiceRemoveVolumeResponse:
        request = agent_pb2.HostAdminServiceRemoveVolumeRequest(name=name, kind=kind)  # type: ignore[arg-type]
        return self._call(self._admin.RemoveVolume, request)

    def create_vm(self, spec: common_pb2.VmSpec) -> common_pb2.VmRuntime:
        # What the host itself allows, not VMM's rule: VMs may share a LUN.
        request = agent_pb2.AgentServiceCreateVmRequest(spec=spec, allow_shared_lun=True)
        return self._call(self._agent.CreateVm, request).vm

    def vm_named(self, name: str) -> common_pb2.VmRuntime:
        """The VM the agent knows by this name (or, failing that, by this id)."""
        inventory = self._call(self._agent.GetInventory, agent_pb2.AgentServiceGetInventoryRequest())
        named = [vm for vm in inventory.vms if vm.spec.name == name]
        if len(named) > 1:
            raise errors.InvalidArgument(
                f"host {self.host} has {len(named)} VMs named {name!r}; give the id of one: "
                + ", ".join(vm.spec.id for vm in named)
            )
        found = named or [vm for vm in inventory.vms if vm.spec.id == name]
        if not found:
            raise errors.NotFound(f"host {self.host} has no VM named {name!r}")
        return found[0]

    def add_cluster_resource(self, vm_id: str, resource: common_pb2.ClusterResource) -> common_pb2.VmRuntime:
        request = agent_pb2.HostAdminServiceAddClusterResourceRequest(vm_id=vm_id, resource=resource)
        return self._call(self._admin.AddClusterResource, request).vm

    def remove_cluster_resource(self, vm_id: str, name: str) -> common_pb2.VmRuntime:
        request = agent_pb2.HostAdminServiceRemoveClusterResourceRequest(vm_id=vm_id, name=name)
        return self._call(self._admin.RemoveClusterResource, request).vm

    def start_vm(self, vm_id: str) -> common_pb2.VmRuntime:
        request = agent_pb2.AgentServiceOperateVmRequest(vm_id=vm_id, operation=agent_pb2.VM_OPERATION_START)
        return self._call(self._agent.OperateVm, request).vm

    def _call(self, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: grpc.RpcError) -> errors.CliError:
        code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = (exc.details() if isinstance(exc, grpc.Call) else "") or str(code)
        agent = f"the agent of host {self.host} at {self.address}"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return errors.HostUnavailable(f"{agent} did not answer within {self._timeout:g} s")
        if code == grpc.StatusCode.UNAVAILABLE:
            return errors.HostUnavailable(f"cannot reach {agent}: {details}")
        return _BY_CODE.get(code, errors.ManagerCallError)(details)


def host_agent(ctx: typer.Context, host: str) -> HostAgent:
    """The agent of `host`, at the address the manager knows it by."""
    options = global_options(ctx)
    address = client(ctx).get_host(host).address
    if not address:
        raise errors.FailedPrecondition(f"the manager knows no address of host {host}'s agent")
    embedded = options.embedded
    if isinstance(embedded, AgentChannels):
        channel = embedded.agent_channel(address)
    else:
        # As the CLI's own identity: an agent takes direct orders from an admin only.
        channel = sync_channel(address, client(ctx).identity, host)
    return HostAgent(host, address, options.settings, channel)


# --- what the commands print -------------------------------------------------------------

NETWORK_COLUMNS = {"name": "NAME", "kind": "KIND", "bound_to": "BOUND TO", "vlan_id": "VLAN"}
VOLUME_COLUMNS = {"name": "NAME", "kind": "KIND", "capacity_gb": "CAPACITY GB", "free_gb": "FREE GB"}


def host_change_dict(
    host: common_pb2.HostInfo, disconnected: list[common_pb2.VmRuntime] | None = None
) -> dict[str, Any]:
    """The host after a change, as `-o json` prints it (stable field names)."""
    return {
        "host": host.name,
        "networks": [render.network_dict(n) for n in host.networks],
        "volumes": [render.volume_dict(v) for v in host.volumes],
        "disconnected_vms": [{"id": vm.spec.id, "name": vm.spec.name} for vm in disconnected or []],
    }


def vm_runtime_dict(host: str, vm: common_pb2.VmRuntime) -> dict[str, Any]:
    spec = vm.spec
    return {
        "id": spec.id,
        "name": spec.name,
        "host": host,
        "state": render.enum_word(common_pb2.VmState, vm.state, "VM_STATE_"),
        "memory_mb": spec.memory_mb,
        "cpus": spec.cpus,
        "disk_gb": spec.disk_gb,
        "storage": render.storage_text(spec.storage),
        "networks": list(spec.networks),
        "highly_available": spec.highly_available,
        "passthrough_disks": [render.storage_text(d) for d in spec.passthrough_disks],
        "iso_image": spec.iso_image or None,
        "cluster_resources": cluster_resource_rows(vm),
    }


def cluster_resource_rows(vm: common_pb2.VmRuntime) -> list[dict[str, str]]:
    return [{"name": r.name, "type": r.type} for r in vm.spec.cluster_resources]


def _print_networks(
    sentence: str,
    host: common_pb2.HostInfo,
    disconnected: list[common_pb2.VmRuntime] | None,
    output: OutputFormat,
) -> None:
    row = host_change_dict(host, disconnected)
    if output is OutputFormat.json:
        render.print_json(row)
        return
    print(sentence)
    if row["disconnected_vms"]:
        names = ", ".join(f"{vm['name']} ({vm['id']})" for vm in row["disconnected_vms"])
        print(f"VMs disconnected from it: {names}")
    render.print_table(f"networks of host {host.name}", row["networks"], NETWORK_COLUMNS)


def _print_volumes(sentence: str, host: common_pb2.HostInfo, output: OutputFormat) -> None:
    row = host_change_dict(host)
    if output is OutputFormat.json:
        render.print_json(row)
        return
    print(sentence)
    shown = [
        {**v, "capacity_gb": v["capacity_bytes"] // GIB, "free_gb": v["free_bytes"] // GIB}
        for v in row["volumes"]
    ]
    render.print_table(f"SAN storage host {host.name} sees", shown, VOLUME_COLUMNS)


def _network_text(bound_to: str, vlan_id: int) -> str:
    return f"bound to {bound_to or 'no adapter'}, {f'VLAN {vlan_id}' if vlan_id else 'untagged'}"


def _int32(value: int | None, option: str) -> int | None:
    if value is not None and not INT32_MIN <= value <= INT32_MAX:
        raise errors.InvalidArgument(f"{option}: {value} is out of range")
    return value


# --- havm host network ... ----------------------------------------------------------------

network_app = typer.Typer(
    help="Change a host's virtual networks on the host itself (the manager sees it at its next refresh).",
    no_args_is_help=True,
)
VlanOption = Annotated[int | None, typer.Option("--vlan", help="VLAN tag, 1 to 4094; 0 is untagged.")]


@network_app.command("add")
def add_network(
    ctx: typer.Context,
    host: HostArgument,
    name: Annotated[str, typer.Argument(help="The network's name; names are compared exactly.")],
    bound_to: Annotated[str, typer.Option("--bound-to", metavar="ADAPTER", help="The host adapter it uses.")],
    vlan: VlanOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a virtual network on the host."""
    network = common_pb2.Network(name=name, bound_to=bound_to, vlan_id=_int32(vlan, "--vlan") or 0)
    with host_agent(ctx, host) as agent:
        reply = agent.add_network(network)
    text = _network_text(network.bound_to, network.vlan_id)
    _print_networks(f"network {name} added on host {host} ({text})", reply.host, None, output)


@network_app.command("remove")
def remove_network(
    ctx: typer.Context, host: HostArgument, name: str, output: OutputOption = OutputFormat.table
) -> None:
    """Delete a virtual network of the host; VMs connected to it are disconnected."""
    with host_agent(ctx, host) as agent:
        reply = agent.remove_network(name)
    _print_networks(
        f"network {name} removed from host {host}", reply.host, list(reply.disconnected_vms), output
    )


@network_app.command("set")
def set_network(
    ctx: typer.Context,
    host: HostArgument,
    name: str,
    bound_to: Annotated[
        str | None, typer.Option("--bound-to", metavar="ADAPTER", help="Bind it to another adapter.")
    ] = None,
    vlan: VlanOption = None,
    rename: Annotated[
        str | None, typer.Option("--rename", metavar="NEW", help="Give it another name.")
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Change a virtual network's adapter or VLAN, or rename it."""
    if bound_to is None and vlan is None and rename is None:
        raise errors.InvalidArgument("give at least one of --bound-to, --vlan or --rename")
    request = agent_pb2.HostAdminServiceUpdateNetworkRequest(name=name)
    if bound_to is not None:
        request.bound_to = bound_to
    if vlan is not None:
        request.vlan_id = _int32(vlan, "--vlan") or 0
    if rename is not None:
        request.new_name = rename
    with host_agent(ctx, host) as agent:
        reply = agent.update_network(request)
    now = rename or name
    network = next((n for n in reply.host.networks if n.name == now), None)
    text = f" ({_network_text(network.bound_to, network.vlan_id)})" if network is not None else ""
    renamed = f", now named {now}" if now != name else ""
    sentence = f"network {name} changed on host {host}{renamed}{text}"
    _print_networks(sentence, reply.host, list(reply.disconnected_vms), output)


# --- havm host storage ... ----------------------------------------------------------------

storage_app = typer.Typer(
    help="Change the SAN storage a host sees, on the host itself (the manager sees it at its next refresh).",
    no_args_is_help=True,
)


def _volume_kind(kind: str, option: str = "--kind") -> common_pb2.StorageKind:
    value = _VOLUME_KINDS.get(kind.lower())
    if value is None:
        raise errors.InvalidArgument(f"{option}: must be csv or lun, got {kind!r}")
    return value


@storage_app.command("add")
def add_storage(
    ctx: typer.Context,
    host: HostArgument,
    name: Annotated[str, typer.Argument(help="The CSV volume or LUN, as named under the SAN directory.")],
    kind: Annotated[str, typer.Option("--kind", metavar="csv|lun", help="A CSV volume or a LUN.")],
    capacity_gb: Annotated[int, typer.Option("--capacity-gb", metavar="N", help="Its size, in GB.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Make a CSV volume or LUN visible to the host."""
    volume_kind = _volume_kind(kind)
    if not 1 <= capacity_gb <= INT32_MAX:
        raise errors.InvalidArgument(f"--capacity-gb: must be a positive number of GB, got {capacity_gb}")
    volume = common_pb2.SharedVolume(name=name, kind=volume_kind, capacity_bytes=capacity_gb * GIB)
    with host_agent(ctx, host) as agent:
        reply = agent.add_volume(volume)
    label = _VOLUME_LABELS[kind.lower()]
    _print_volumes(f"{label} {name} ({capacity_gb} GB) now visible to host {host}", reply.host, output)


@storage_app.command("remove")
def remove_storage(
    ctx: typer.Context,
    host: HostArgument,
    name: str,
    kind: Annotated[
        str | None,
        typer.Option("--kind", metavar="csv|lun", help="Which, when a CSV volume and a LUN share the name."),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Make a CSV volume or LUN no longer visible to the host (its files stay on the SAN)."""
    volume_kind = _volume_kind(kind) if kind is not None else common_pb2.STORAGE_KIND_UNSPECIFIED
    with host_agent(ctx, host) as agent:
        reply = agent.remove_volume(name, volume_kind)
    _print_volumes(f"{name} no longer visible to host {host}", reply.host, output)


# --- havm host vm create ------------------------------------------------------------------

host_vm_app = typer.Typer(
    help="Create VMs on a host directly, behind the manager's back (it finds them at its next refresh).",
    no_args_is_help=True,
)


@host_vm_app.command("create")
def create_vm(
    ctx: typer.Context,
    host: HostArgument,
    name: str,
    memory_mb: Annotated[
        int, typer.Option("--memory-mb", min=1, max=INT32_MAX, help="Guest memory.")
    ] = DEFAULT_MEMORY_MB,
    cpus: CpusOption = None,
    disk_gb: DiskOption = None,
    ha: Annotated[bool, typer.Option("--ha", help="Mark it highly available.")] = False,
    storage: StorageOption = None,
    network: NetworkOption = None,
    passthrough: Annotated[
        list[str] | None,
        typer.Option(
            "--passthrough",
            metavar="lun:NAME|local:NAME",
            help="A LUN or local disk handed to the guest whole; repeatable.",
        ),
    ] = None,
    iso: Annotated[
        str | None, typer.Option("--iso", metavar="PATH", help="An ISO image in the VM's DVD drive.")
    ] = None,
    start: Annotated[bool, typer.Option("--start", help="Start it once created.")] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a VM on the host itself; it may share a LUN, as the host allows."""
    disks = [_passthrough_disk(text) for text in passthrough or []]
    location = parse_storage(storage) or _first_local_disk(ctx, host)
    spec = common_pb2.VmSpec(
        id=str(uuid.uuid4()),
        name=name,
        memory_mb=memory_mb,
        cpus=cpus or 1,
        disk_gb=disk_gb or DEFAULT_DISK_GB,
        storage=location,
        networks=network or [],
        highly_available=ha,
        passthrough_disks=disks,
        iso_image=iso or "",
    )
    with host_agent(ctx, host) as agent:
        vm = agent.create_vm(spec)
        if start:
            vm = agent.start_vm(spec.id)
    row = vm_runtime_dict(host, vm)
    if output is OutputFormat.json:
        render.print_json(row)
        return
    print(f"VM {name} created on host {host} ({row['state']}), id {spec.id}")


_PASSTHROUGH_KINDS = {"lun": common_pb2.STORAGE_KIND_LUN, "local": common_pb2.STORAGE_KIND_LOCAL_DISK}


def _passthrough_disk(text: str) -> common_pb2.StorageLocation:
    """ "lun:Data" -> StorageLocation(LUN, "Data")."""
    kind, sep, name = text.partition(":")
    if sep and name and kind.lower() == "csv":
        raise errors.InvalidArgument(
            f"--passthrough: CSV volume {name} is a volume, not a disk to pass through; "
            "give lun:NAME or local:NAME"
        )
    if not sep or not name or kind.lower() not in _PASSTHROUGH_KINDS:
        raise errors.InvalidArgument(f"--passthrough: {text!r} is not lun:NAME or local:NAME")
    return common_pb2.StorageLocation(kind=_PASSTHROUGH_KINDS[kind.lower()], name=name)


def _first_local_disk(ctx: typer.Context, host: str) -> common_pb2.StorageLocation:
    disks = client(ctx).get_host(host).disks
    if not disks:
        raise errors.InvalidArgument(f"host {host} has no local disk the manager knows of; give --storage")
    return common_pb2.StorageLocation(kind=common_pb2.STORAGE_KIND_LOCAL_DISK, name=disks[0].name)


def register_host_change_commands(host_app: typer.Typer) -> None:
    host_app.add_typer(network_app, name="network")
    host_app.add_typer(storage_app, name="storage")
    host_app.add_typer(host_vm_app, name="vm")
