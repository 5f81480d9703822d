"""Renders what the manager judges of a cluster's configuration: the causes of an
unsupported cluster configuration, the cluster's networks and its groups."""

from __future__ import annotations

from havm.cli.render_words import Row, enum_word
from havm.v1 import common_pb2, manager_pb2


def cluster_network_dict(n: manager_pb2.ClusterNetwork) -> Row:
    return {
        "name": n.name,
        "kind": enum_word(common_pb2.NetworkKind, n.kind, "NETWORK_KIND_"),
        "common": n.common,
        "vlan_id": n.vlan_id,
        "bound_to": n.bound_to,
        "missing_on": list(n.missing_on),
        "differs_on": {d.node: d.detail for d in n.differs_on},
    }


def reason_dict(reason: manager_pb2.StatusReason) -> Row:
    cause = enum_word(manager_pb2.ConfigCause, reason.cause, "CONFIG_CAUSE_")
    return {"cause": cause, "detail": reason.detail, "subject": reason.subject}


def status_cell(row: Row) -> str:
    """`vm list`'s STATUS: the status, then a mark per cause standing (and those ignored)."""
    ignored = [r["cause"] for r in row["ignored_reasons"]]
    standing = [r["cause"] for r in row["status_reasons"] if r not in row["ignored_reasons"]]
    marks = f" [{', '.join(standing)}]" if standing else ""
    if ignored:
        marks += f" (ignored: {', '.join(ignored)})"
    return f"{row['status']}{marks}"


def reasons_text(reasons: list[Row]) -> str:
    """`vm show`'s reasons: one sentence per cause."""
    return "\n".join(f"{r['cause']}: {r['detail']}" for r in reasons) or "-"


def cluster_networks_text(networks: list[Row]) -> str:
    lines = []
    for n in networks:
        vlan = f", VLAN {n['vlan_id']}" if n["vlan_id"] else ""
        where = f"{n['name']} ({n['kind']} on {n['bound_to'] or '-'}{vlan})"
        if n["common"]:
            lines.append(f"{where}: common")
            continue
        why = [f"missing on {', '.join(n['missing_on'])}"] if n["missing_on"] else []
        why += [f"on {node} {detail}" for node, detail in n["differs_on"].items()]
        lines.append(f"{where}: not common, {'; '.join(why)}")
    return "\n".join(lines) or "-"


def cluster_group_dict(group: manager_pb2.ClusterGroup) -> Row:
    return {
        "name": group.name,
        "vm": group.vm,
        "owner_node": group.owner_node,
        "resources": [
            {
                "name": r.name,
                "kind": enum_word(manager_pb2.ClusterResourceKind, r.kind, "CLUSTER_RESOURCE_KIND_"),
                "type": r.type,
                "online_on": list(r.online_on),
                "path": r.path or None,
            }
            for r in group.resources
        ],
    }


def resources_text(resources: list[Row]) -> str:
    lines = []
    for r in resources:
        where = ", ".join(r["online_on"]) or "offline"
        path = f" at {r['path']}" if r.get("path") else ""
        lines.append(
            f"{r['name']} ({r['type']}){path}: online on {where}"
            if r["online_on"]
            else f"{r['name']} ({r['type']}){path}: offline"
        )
    return "\n".join(lines) or "-"
