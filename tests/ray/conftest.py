"""Sharded collections on a local Ray instance (two CPUs, no dashboard), started once per module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, namespace="nestor-test")
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def cluster(ray_local: Any) -> Any:
    from cluster.sharded import RayCluster

    return RayCluster("local", write_timeout=30.0, read_timeout=30.0)
