"""Scale-out on Ray: sharded and replicated collections, and distributed bulk ingest.

A collection created with `"shards": N, "replicas": R` on a server started with a Ray address is a
`ShardedCollection` (`cluster/sharded.py`). Its points are hashed by id over N shards
(`cluster/routing.py`); each shard is held by R Ray actors (`cluster/shard.py`), each an ordinary
single-node `index.collection.Collection` with its own data directory on its node.

Layering: `cluster` imports `index` and `nestor_client` (and ray); `server` may import `cluster`;
`index` never does. Nothing here is imported unless a Ray address is configured, so the
single-node server never loads ray. Design and cost model: docs/scale-out.md.
"""

from __future__ import annotations

__all__: list[str] = []
