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
