"""The resources an administrator adds to a highly available VM's cluster group.

In Failover Cluster Manager a VM's group holds the VM resource, its configuration
resource and its disks; an administrator may add others (a generic service, a
third-party replication resource). They are part of the VM's configuration here, so
that they move with the VM and outlive an agent restart, and the manager learns of them
from what the agent reports. A VM that is not highly available has no group at all.

Cluster resource names are case-insensitive, as the cluster compares them. Purely
computational, no side effects.
"""

from __future__ import annotations

import dataclasses

from node_agent.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from node_agent.core.vm import ClusterResource, VmSpec

MAX_RESOURCE_TEXT = 128


def own_resource_names(spec: VmSpec) -> tuple[str, ...]:
    """The resources the cluster makes for the VM itself (its disks go by their own names)."""
    return (f"Virtual Machine {spec.name}", f"Virtual Machine Configuration {spec.name}")


def _key(name: str) -> str:
    return name.casefold()


def _check_text(value: str, field: str) -> None:
    if not value.strip():
        raise InvalidArgument(f"{field}: is required")
    if len(value) > MAX_RESOURCE_TEXT:
        raise InvalidArgument(f"{field}: has {len(value)} characters; at most {MAX_RESOURCE_TEXT}")
    if any(ord(c) < 32 for c in value):
        raise InvalidArgument(f"{field}: must not contain control characters")


def check_resource(spec: VmSpec, resource: ClusterResource, field: str) -> None:
    """One resource as a group of `spec` may hold it (its name, its type)."""
    _check_text(resource.name, f"{field}.name")
    _check_text(resource.type, f"{field}.type")
    own = next((n for n in own_resource_names(spec) if _key(n) == _key(resource.name)), None)
    if own is not None:
        raise InvalidArgument(
            f"{field}.name: {resource.name!r} is one of the cluster group's own resources "
            f"of VM {spec.label} ({own!r}); give another name"
        )


def check_has_group(spec: VmSpec) -> None:
    if not spec.highly_available:
        raise FailedPrecondition(f"VM {spec.label} is not highly available: it has no cluster group")


def check_cluster_resources(spec: VmSpec, field: str = "spec.cluster_resources") -> None:
    """The resources a configuration carries (a creation, a VM arriving)."""
    if not spec.cluster_resources:
        return
    if not spec.highly_available:
        raise InvalidArgument(f"{field}: VM {spec.label} is not highly available: it has no cluster group")
    seen: set[str] = set()
    for i, resource in enumerate(spec.cluster_resources):
        check_resource(spec, resource, f"{field}[{i}]")
        if _key(resource.name) in seen:
            raise InvalidArgument(f"{field}[{i}].name: {resource.name!r} is listed twice")
        seen.add(_key(resource.name))


def with_resource(spec: VmSpec, resource: ClusterResource) -> VmSpec:
    """The configuration with `resource` added to the VM's group."""
    check_has_group(spec)
    check_resource(spec, resource, "resource")
    existing = next((r for r in spec.cluster_resources if _key(r.name) == _key(resource.name)), None)
    if existing is not None:
        raise AlreadyExists(
            f"the cluster group of VM {spec.label} already has a resource named {existing.name!r} "
            f"({existing.type})"
        )
    return dataclasses.replace(spec, cluster_resources=(*spec.cluster_resources, resource))


def without_resource(spec: VmSpec, name: str) -> VmSpec:
    """The configuration with the added resource `name` gone from the VM's group."""
    check_has_group(spec)
    if not name.strip():
        raise InvalidArgument("name: is required")
    if any(_key(n) == _key(name) for n in own_resource_names(spec)):
        raise InvalidArgument(
            f"name: {name!r} is one of the cluster group's own resources of VM {spec.label}; "
            "only resources an administrator added can be removed"
        )
    kept = tuple(r for r in spec.cluster_resources if _key(r.name) != _key(name))
    if len(kept) == len(spec.cluster_resources):
        added = ", ".join(repr(r.name) for r in spec.cluster_resources) or "none"
        raise NotFound(
            f"the cluster group of VM {spec.label} has no resource named {name!r} (added resources: {added})"
        )
    return dataclasses.replace(spec, cluster_resources=kept)
