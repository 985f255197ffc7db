"""Live and dead bytes of a collection: what a compaction would reclaim.

Labels are never reused, so an overwritten or deleted point leaves its row in every vector store,
its node in every index (as a tombstone), its token slice, and free pages in SQLite. This module
measures both halves from the structures themselves: rows by each field's `alive` mask, index bytes
in proportion to the dead labels below its watermark (every label there was inserted, then
tombstoned when it died), tokens by their slices, SQLite by its free pages (and the WAL, which a
checkpoint empties).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from index.batch import Field
from index.dense import DenseField
from index.multivector import MultiVectorField
from index.sparse import SparseField
from nestor_client.models import ByteUsage, StorageUsage

if TYPE_CHECKING:
    from index.collection import Collection

__all__ = ["storage_usage"]


def _split(total: int, dead_share: float) -> tuple[int, int]:
    dead = round(total * dead_share)
    return total - dead, dead


def _dense(f: DenseField, n: int) -> dict[str, ByteUsage]:
    alive = f.alive[:n]
    live = int(alive.sum())
    row = 4 * f.dim
    in_ram = f.vectors.ram_bytes() > 0
    disk = f.vectors.disk_bytes()
    rows = ByteUsage(
        disk_live=live * row,
        disk_dead=max(0, disk - live * row),
        ram_live=live * row if in_ram else 0,
        ram_dead=(n - live) * row if in_ram else 0,
    )
    out = {"rows": rows}
    st = f.state
    if st.index is not None:
        upto = min(st.upto, n)
        share = 1.0 - float(alive[:upto].sum()) / upto if upto else 0.0
        mem = getattr(st.index, "memory", None)
        parts = mem() if mem is not None else {"codes": st.index.ram_bytes()}
        ram = sum(int(v) for k, v in parts.items() if k != "transform")
        ram_live, ram_dead = _split(ram, share)
        disk_live, disk_dead = _split(f.index_disk, share)
        out["index"] = ByteUsage(disk_live=disk_live, disk_dead=disk_dead, ram_live=ram_live, ram_dead=ram_dead)
    return out


def _multi(f: MultiVectorField, n: int) -> dict[str, ByteUsage]:
    out = _dense(f.fde, n) if f.fde is not None else {}
    snap = f.tokens.snapshot()
    docs = min(n, snap.n_docs)
    lengths = np.diff(snap.offsets[: docs + 1])
    live_tokens = int(lengths[f.alive[:docs]].sum())
    per = f.tokens.bytes_per_token
    total = f.tokens.n_tokens * per
    disk = f.tokens.disk_bytes()
    out["tokens"] = ByteUsage(
        disk_live=min(disk, live_tokens * per + 8 * docs),
        disk_dead=max(0, disk - live_tokens * per - 8 * docs),
        ram_live=live_tokens * per,
        ram_dead=total - live_tokens * per,
    )
    return out


def _sparse(f: SparseField, n: int) -> dict[str, ByteUsage]:
    """Stored rows by their live entries (the postings are rebuilt from them: counted with the rows)."""
    snap = f.store.snapshot()
    docs = min(n, snap.n_docs)
    lengths = np.diff(snap.offsets[: docs + 1])
    total = max(int(snap.offsets[docs]), 1) if docs else 1
    share = 1.0 - float(lengths[f.alive[:docs]].sum()) / total if docs else 0.0
    disk_live, disk_dead = _split(f.store.disk_bytes(), share)
    ram_live, ram_dead = _split(f.ram_bytes(), share)
    return {"rows": ByteUsage(disk_live=disk_live, disk_dead=disk_dead, ram_live=ram_live, ram_dead=ram_dead)}


def _usage(f: Field, n: int) -> dict[str, ByteUsage]:
    if isinstance(f, MultiVectorField):
        return _multi(f, n)
    if isinstance(f, SparseField):
        return _sparse(f, n)
    return _dense(f, n)


def storage_usage(coll: Collection) -> StorageUsage:
    n = coll.labels.n
    vectors = {name: _usage(f, n) for name, f in coll.fields.items()}
    used, free = coll.points.page_usage()
    wal = coll.points.path.with_name(coll.points.path.name + "-wal")
    wal_bytes = os.stat(wal).st_size if wal.exists() else 0
    store = ByteUsage(disk_live=used, disk_dead=free + wal_bytes)
    parts = [u for per in vectors.values() for u in per.values()] + [store]
    live = sum(u.disk_live + u.ram_live for u in parts)
    dead = sum(u.disk_dead + u.ram_dead for u in parts)
    return StorageUsage(
        live=live,
        dead=dead,
        dead_fraction=round(dead / (live + dead), 4) if live + dead else 0.0,
        labels=n,
        dead_labels=n - coll.count,
        vectors=vectors,
        store=store,
    )
