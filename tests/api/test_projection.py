"""LeanVec-OOD that never loses, through REST: a posted query sample refits the projection with a held-out
check, the collection info reports the choice and each candidate's held-out loss, and the spec names the
projection in use; the choice survives a restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tests.api.conftest import wait_indexed
from tests.synth import exact_topk, recall
from tests.unit.quantization._lowrank import lowrank

N, DIM, RED = 3000, 64, 12


def _trained_after(client: Any, name: str, after: float) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        idx: dict[str, Any] = wait_indexed(client, name)
        if idx.get("trained") and float(idx.get("trained_at", 0.0)) > after:
            return idx
        assert time.monotonic() < deadline, f"{name} never refitted: {idx}"
        time.sleep(0.05)


def test_a_query_sample_like_the_data_keeps_the_best_projection(server: Callable[..., Any]) -> None:
    base, queries = lowrank(n_base=N, n_query=450, dim=DIM, seed=7)
    sample, fresh = queries[:400], queries[400:]  # queries from the data's own distribution
    config = {"reduce": {"type": "leanvec", "dim": RED, "mode": "ood"}, "training": {"threshold": N}}
    with server() as c:
        c.create_collection("p", dim=DIM, metric="cosine", **config)
        c.upload("p", ids=list(range(N)), vectors=base, batch_size=1000)
        first = _trained_after(c, "p", 0.0)
        assert "projection" not in first  # no query sample yet: nothing to check against
        assert c.add_query_sample("p", list(sample)) == 400
        info = _trained_after(c, "p", float(first["trained_at"]))
        proj = info["projection"]
        assert proj["held_out_queries"] == 80
        got = proj["candidate_recall"]
        assert set(got) == {"id", "id_rescaled", "ood", "blend", "pca_matryoshka"}
        assert got[proj["chosen"]] == max(got.values()) and got[proj["chosen"]] >= got["id"]
        assert proj["held_out_loss"]["id"] == round(1 - got["id"], 4)
        spec = {"id": "LeanVec12,", "id_rescaled": "LeanVec12-rescaled,", "ood": "LeanVec12-OOD,"}
        spec["blend"] = "LeanVec12-OOD-blend,"
        assert info["spec"].startswith(spec.get(proj["chosen"], "PCA-Matryoshka12,"))
        found = c.search_batch("p", [{"vector": q.tolist(), "limit": 10, "with_payload": False} for q in fresh])
        ids = np.array([[h.id for h in r] for r in found])
        assert recall(ids, exact_topk(base, fresh, 10), 10) >= 0.9
    with server() as c:  # reopened: the same projection, no refit
        again = c.get_collection("p").index
        assert again["projection"] == proj and again["spec"] == info["spec"]
