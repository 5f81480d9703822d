"""Fixtures of the end-to-end tests: a real local cluster per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster_harness import LocalCluster, start_cluster, stop_cluster


@pytest.fixture(scope="module")
def default_cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("havm"))
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
