"""Fixtures of the end-to-end tests: a real local cluster per test module.

When the tests run on several workers (pytest-xdist), each worker's clusters take
their ports from a range of their own (HAVM_PORT_RANGE, below the kernel's ephemeral
range), so that two clusters starting at the same moment never pick the same port.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from cluster_harness import LocalCluster, start_cluster, stop_cluster

from havm.ports import LOWEST_PORT, PORT_RANGE_ENV, ephemeral_range


def _worker_port_range() -> str | None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or PORT_RANGE_ENV in os.environ:
        return None
    index, workers = int(worker[2:]), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    span = (ephemeral_range()[0] - LOWEST_PORT) // max(workers, 1)
    low = LOWEST_PORT + index * span
    return f"{low}-{low + span - 1}"


if (_range := _worker_port_range()) is not None:
    os.environ[PORT_RANGE_ENV] = _range


@pytest.fixture(scope="module")
def default_cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("havm"))
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


# Modules whose tests each start a cluster of their own: on several workers their tests
# are spread one by one. Every other module's tests share one cluster (a module-scoped
# fixture) and so run on one worker, as a group (scripts/test uses --dist loadgroup).
OWN_CLUSTER_PER_TEST = {
    "test_capacity",
    "test_fault_schedule",
    "test_host_admin",
    "test_isolation_timing",
    "test_scenarios_real",
    "test_up_down",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
        if module not in OWN_CLUSTER_PER_TEST:
            item.add_marker(pytest.mark.xdist_group(module))
