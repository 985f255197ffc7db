"""The connection to a Ray cluster, and the factory the catalog uses for sharded or replicated collections."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cluster.errors import ClusterUnavailable
from index.contract import CollectionOptions
from nestor_client.models import CollectionConfig

if TYPE_CHECKING:
    from cluster.sharded import ShardedCollection

__all__ = ["RayCluster"]


class RayCluster:
    """The connection to Ray, and the factory the catalog uses for collections with shards or replicas."""

    def __init__(
        self,
        address: str,
        *,
        shard_cpus: float = 0.0,
        max_restarts: int = -1,
        actor_concurrency: int = 8,
        start_timeout: float = 120.0,
        write_timeout: float = 60.0,
        read_timeout: float = 30.0,
        catch_up_timeout: float = 600.0,
        compiled: bool = True,
        compile_after: float = 5.0,
    ) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ClusterUnavailable(
                "a Ray address is set but ray is not installed: pip install 'nestor[ray]' (ray[data])"
            ) from exc

        self.address = address
        self.shard_cpus = shard_cpus
        self.max_restarts = max_restarts
        self.actor_concurrency = actor_concurrency
        self.start_timeout = start_timeout
        self.write_timeout = write_timeout
        self.read_timeout = read_timeout
        self.catch_up_timeout = catch_up_timeout
        self.compiled = compiled  # searches through a Ray compiled graph (falls back to actor calls)
        # A graph compiles only over replicas live this long (seconds): Ray 2.60 aborts the whole process
        # when an actor dies while a graph over it compiles, and a replica just back is the likeliest to.
        self.compile_after = compile_after
        self._owns = False
        if not ray.is_initialized():
            try:
                ray.init(
                    address=None if address == "local" else address,
                    namespace="nestor",
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except Exception as exc:
                raise ClusterUnavailable(f"cannot connect to the Ray cluster at {address!r}: {exc}") from exc
            self._owns = True

    def create(
        self, name: str, directory: Path, config: CollectionConfig, options: CollectionOptions
    ) -> ShardedCollection:
        from cluster.sharded import ShardedCollection

        return ShardedCollection.create(name, directory, config, options, self)

    def open(
        self, name: str, directory: Path, config: CollectionConfig, options: CollectionOptions
    ) -> ShardedCollection:
        from cluster.sharded import ShardedCollection

        return ShardedCollection(name, directory, config, options, self)

    def nodes(self) -> list[dict[str, Any]]:
        import ray

        return [
            {
                "node_id": n["NodeID"],
                "address": n["NodeManagerAddress"],
                "alive": n["Alive"],
                "resources": n["Resources"],
            }
            for n in ray.nodes()
        ]

    def shutdown(self) -> None:
        if self._owns:
            import ray

            ray.shutdown()
