"""Errors of the distributed path; each is a `NestorError`, so the server maps it to its status."""

from __future__ import annotations

from index.errors import NestorError

__all__ = ["ClusterUnavailable", "ShardUnavailable"]


class ShardUnavailable(NestorError):
    """A shard has no live replica: its writes cannot be acknowledged and its searches cannot be exact."""

    status = 503
    type = "shard_unavailable"


class ClusterUnavailable(NestorError):
    """The Ray cluster cannot be reached, or a sharded collection was asked for without one."""

    status = 503
    type = "cluster_unavailable"
