"""What `GET /collections/{name}` reports for a sharded collection: its shards, replicas and their health.

Each replica reports its own collection info; the shard's first live replica stands for the shard.
Counts, indexed and pending points and memory are summed over shards (memory is one replica per
shard: multiply by `replicas` for the cluster's total). A shard with no live replica makes the
collection red, a replica out of service makes it yellow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cluster.replicas import PING_TIMEOUT
from nestor_client.models import CollectionInfo, is_tenant, schema_type

if TYPE_CHECKING:
    from cluster.sharded import ShardedCollection

__all__ = ["sharded_info"]


def sharded_info(coll: ShardedCollection) -> CollectionInfo:
    """Every replica's own info, merged: counts and memory summed over shards, health per replica."""
    import ray

    refs = [(rep, rep.actor.info.remote()) for sh in coll.shards for rep in sh.replicas]
    infos: dict[int, dict[str, Any]] = {}
    for rep, ref in refs:
        try:
            infos[id(rep)] = ray.get(ref, timeout=PING_TIMEOUT)
        except Exception as exc:
            if rep.state == "live":
                coll._out_of_service(rep, exc)
    shard_rows: list[dict[str, Any]] = []
    primaries: list[dict[str, Any] | None] = []
    for sh in coll.shards:
        reps = []
        for rep in sh.replicas:
            got = infos.get(id(rep))
            reps.append(
                {
                    "replica": rep.index,
                    "state": rep.state,
                    "health": "green" if rep.state == "live" else "red",
                    "node": got["node"] if got else rep.node,
                    "node_id": got["node_id"] if got else rep.node_id,
                    "pid": got["pid"] if got else None,
                    "count": got["count"] if got else None,
                    "applied": got["applied"] if got else None,
                    "failures": rep.failures,
                    "catch_ups": rep.catch_ups,
                    "last_error": rep.last_error,
                }
            )
        live = [infos[id(r)] for r in sh.live() if id(r) in infos]
        primaries.append(live[0] if live else None)
        health = "green" if len(live) == len(sh.replicas) else ("yellow" if live else "red")
        shard_rows.append(
            {
                "shard": sh.index,
                "op": sh.op,
                "count": live[0]["count"] if live else None,
                "health": health,
                "replicas": reps,
            }
        )
    healths = {row["health"] for row in shard_rows}
    status = "red" if "red" in healths else ("yellow" if "yellow" in healths else "green")
    up = [p for p in primaries if p is not None]
    if any(p["status"] == "red" for p in up):
        status = "red"  # a replica's indexer keeps failing
    elif status == "green" and any(p["status"] != "green" for p in up):
        status = "yellow"  # every replica is up, some index is still building
    count = sum(p["count"] for p in up)
    coll._count_cache = count
    main = coll.vector_config(None)[1] if coll._default is not None else next(iter(coll.fields.values()))
    index = dict(up[0]["index"]) if up else {"type": main.index.type, "state": "unavailable"}
    vectors = {name: dict(v) for name, v in up[0]["vectors"].items()} if up else {}
    for key in ("indexed", "pending"):
        if up:
            index[key] = sum(p["index"][key] for p in up)
            for name, v in vectors.items():
                v["index"] = {**v["index"], key: sum(p["vectors"][name]["index"][key] for p in up)}
    memory: dict[str, dict[str, int]] = {}
    for p in up:
        for comp, where in p["memory"].items():
            slot = memory.setdefault(comp, {"ram": 0, "disk": 0})
            for k, v in where.items():
                slot[k] = slot.get(k, 0) + int(v)
    nodes = sorted({r["node"] for row in shard_rows for r in row["replicas"] if r["node"]})
    payload_schema = {}  # points and RAM summed over shards (one replica each); ready once every shard's is
    for key, s in coll.config.payload_schema.items():
        parts = [p.get("payload_schema", {}).get(key) for p in up]
        ready = bool(up) and all(part is not None and part["state"] == "ready" for part in parts)
        payload_schema[key] = {
            "data_type": schema_type(s).value,
            "is_tenant": is_tenant(s),
            "state": "ready" if ready else "indexing",
            "points": sum(part["points"] for part in parts if part),
            "ram": sum(part["ram"] for part in parts if part),
        }
    return CollectionInfo.model_validate(
        {
            "name": coll.name,
            "config": coll.config.model_dump(mode="json"),
            "count": count,
            "vectors": vectors,
            "status": status,
            "seq": coll.seq,
            "index": index,
            "segments": [
                {"type": "shard", "shard": row["shard"], "points": row["count"] or 0, "health": row["health"]}
                for row in shard_rows
            ],
            "memory": memory,  # one replica per shard: multiply by `replicas` for the cluster's total
            "placement": {**(up[0]["placement"] if up else {}), "shards": "Ray actors, one directory per replica"},
            "last_write": coll.last_write,
            "last_optimized": max((p["last_optimized"] or 0 for p in up), default=None) or None,
            "payload_schema": payload_schema,
            "cluster": {
                "shards": len(coll.shards),
                "replicas": coll.config.replicas,
                "health": status,
                "nodes": nodes,
                "ray_address": coll.cluster.address,
                "shard_list": shard_rows,
            },
        }
    )
