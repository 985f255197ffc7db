"""The RAM cap: past it, a collection's float32 vectors are served memory-mapped instead of from RAM.

`NESTOR_RAM_CAP_BYTES` (`CollectionOptions.ram_cap`) bounds the RAM a collection's optional parts may
take: the in-RAM copies of its `vectors.f32` files, which exact search and reranking read and which a
memory map serves just as well (the OS pages rows in as they are touched). Indexes are not optional and
stay in RAM. When the copies exceed the cap, the largest move to a memory map first, until the rest
fits; the collection info's `placement.vectors` then says `memory-mapped (over the RAM cap)`. Checked at
open, by the optimizer's periodic tick, and after a compaction (whose new generation opens in RAM).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from index.collection import Collection

__all__ = ["apply_ram_cap"]

log = logging.getLogger("nestor.collection")


def apply_ram_cap(coll: Collection) -> list[str]:
    """Move vector stores to memory maps, largest first, until the in-RAM ones fit the cap; returns the
    names of the vectors moved."""
    cap = coll.options.ram_cap
    if cap <= 0:
        return []
    moved: list[str] = []
    with coll._write_lock:  # no append runs while a store changes its backing
        stores = [f for f in coll.dense_fields() if not f.vectors.on_disk]
        total = sum(f.vectors.ram_bytes() for f in stores)
        for f in sorted(stores, key=lambda f: -f.vectors.ram_bytes()):
            if total <= cap:
                break
            total -= f.vectors.to_disk()
            moved.append(f.name)
    if moved:
        log.info("collection %s: vectors %s memory-mapped (RAM cap %d bytes)", coll.name, moved, cap)
    return moved
