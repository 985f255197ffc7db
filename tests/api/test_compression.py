"""Compression through the client: each reduce/quantize/rerank configuration against the exact oracle,
restarts, refits, the query sample, memory by component, and bad configs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from nestor_client import ApiError, NestorClient
from tests.api.conftest import wait_indexed
from tests.synth import exact_topk, recall, split

DIM = 64
N = 3000
TRAIN = {"threshold": N}  # one fit, on all of the data

CONFIGS: dict[str, tuple[dict[str, Any], str, float]] = {
    "leanvec_id": ({"reduce": {"type": "leanvec", "dim": 16}}, "leanvec_hnsw", 0.95),
    "leanvec_ood": ({"reduce": {"type": "leanvec", "dim": 16, "mode": "ood"}}, "leanvec_hnsw", 0.9),
    "leanvec_ivf": (
        {
            "reduce": {"type": "leanvec", "dim": 16},
            "index": {"type": "ivf_pq", "nprobe": 16, "m": 8},
            "rerank": {"oversampling": 10},
        },
        "leanvec_ivf_pq",
        0.9,
    ),
    "pca_matryoshka_funnel": (
        {
            "reduce": {"type": "matryoshka", "dim": 16, "rotate": "pca", "funnel": [{"dim": 32, "limit": 40}]},
            "index": {"type": "flat"},
        },
        "matryoshka_flat",
        0.95,
    ),
    "binary_hnsw": ({"quantize": {"type": "binary"}}, "binary_hnsw", 0.9),
    "binary_flat_2bit_asymmetric": (
        {"quantize": {"type": "binary", "bits": 2, "query": "asymmetric"}, "index": {"type": "flat"}},
        "binary_flat",
        0.95,
    ),
    "binary_ivf": (
        {"quantize": {"type": "binary"}, "index": {"type": "ivf_pq", "nprobe": 32}, "rerank": {"oversampling": 20}},
        "binary_ivf_pq",
        0.9,
    ),
    "int8_hnsw": ({"quantize": {"type": "int8"}}, "int8_hnsw", 0.95),
    "leanvec_rescaled_int8_hnsw": (
        {"reduce": {"type": "leanvec", "dim": 16, "rescale": True}, "quantize": {"type": "int8"}},
        "leanvec_int8_hnsw",
        0.95,
    ),
    "int8_rerank_on_disk": (
        {"reduce": {"type": "leanvec", "dim": 16}, "rerank": {"store": "int8"}, "on_disk": True},
        "leanvec_hnsw",
        0.9,
    ),
}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return split(N, 50, DIM, seed=5)


def _load(client: NestorClient, name: str, config: dict[str, Any], base: np.ndarray) -> None:
    client.create_collection(name, dim=DIM, metric="cosine", training=TRAIN, **config)
    payloads = [{"bucket": i % 10} for i in range(len(base))]
    client.upload(name, ids=list(range(len(base))), vectors=base, payloads=payloads, batch_size=1000)
    wait_trained(client, name)


def wait_trained(client: NestorClient, name: str, after: float = 0.0) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        idx = wait_indexed(client, name)
        if idx.get("trained") and float(idx.get("trained_at", 0.0)) > after:  # type: ignore[arg-type]
            return idx
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} never trained: {idx}")
        time.sleep(0.05)


def _ids(results: list[Any]) -> np.ndarray:
    return np.array([[h.id for h in r] for r in results])


@pytest.mark.parametrize("kind", CONFIGS)
def test_recall_restart_and_memory(server: Callable[..., Any], data: tuple[np.ndarray, np.ndarray], kind: str) -> None:
    base, queries = data
    config, strategy, floor = CONFIGS[kind]
    truth = exact_topk(base, queries, 10)
    searches = [{"vector": q.tolist(), "limit": 10, "with_payload": False} for q in queries]
    with server() as c:
        _load(c, kind, config, base)
        found = c.search_batch(kind, searches)
        assert {r.strategy for r in found} == {strategy}
        assert recall(_ids(found), truth, 10) >= floor
        single = c.search(kind, queries[0], limit=10, with_payload=False)
        assert [h.id for h in single] == _ids(found)[0].tolist()
        # reranked scores are the exact cosines
        exact = base[[h.id for h in single]] @ (queries[0] / np.linalg.norm(queries[0]))
        np.testing.assert_allclose([h.score for h in single], exact, atol=1e-4 if "int8" not in kind else 2e-2)
        info = c.get_collection(kind)
        assert info.index["spec"] and info.index["trained_on"] == N
        mem = info.memory
        # a learned reduction, sign-code centring or an int8 rerank store keep matrices; plain int8 codes do not
        learned = "reduce" in config or config.get("quantize", {}).get("type") == "binary"
        learned |= config.get("rerank", {}).get("store") == "int8"
        assert mem["codes"]["ram"] > 0 and (mem["transform"]["ram"] > 0) == learned
        if config.get("on_disk"):
            assert mem["vectors"]["ram"] == 0 and mem["rerank"]["ram"] >= N * DIM
            assert info.placement["vectors"].startswith("disk")
        before = [[(h.id, round(h.score, 5)) for h in r] for r in found]
    with server() as c:
        after = [[(h.id, round(h.score, 5)) for h in r] for r in c.search_batch(kind, searches)]
        again = c.get_collection(kind)
        assert again.index["trained_on"] == N and again.memory["graph"]["disk"] > 0  # loaded, not retrained
    assert after == before


def test_binary_codes_are_a_sixteenth_of_float32(client: NestorClient, data: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = data
    _load(client, "b", {"quantize": {"type": "binary"}, "index": {"type": "flat"}, "on_disk": True}, base)
    mem = client.get_collection("b").memory
    assert mem["vectors"]["ram"] == 0
    assert mem["codes"]["ram"] <= N * DIM * 4 / 16
    found = client.search_batch(
        "b", [{"vector": q.tolist(), "limit": 10, "params": {"oversampling": 20}} for q in queries]
    )
    assert recall(_ids(found), exact_topk(base, queries, 10), 10) >= 0.95


def test_exact_before_training_then_refit_on_growth(client: NestorClient, data: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = data
    client.create_collection(
        "g", dim=DIM, reduce={"type": "leanvec", "dim": 16}, training={"threshold": 800, "refit_growth": 2.0}
    )
    client.upload("g", ids=list(range(500)), vectors=base[:500])
    assert client.search("g", queries[0], limit=5).strategy == "exact"
    assert client.get_collection("g").index["state"] == "untrained"
    client.upload("g", ids=list(range(500, 1000)), vectors=base[500:1000])
    first = wait_trained(client, "g")
    assert first["trained_on"] == 1000
    client.upload("g", ids=list(range(1000, 2100)), vectors=base[1000:2100])
    second = wait_trained(client, "g", after=float(first["trained_at"]))
    assert second["trained_on"] >= 2000  # refits once 2x the first fit's 1,000 points are in
    got = client.search_batch("g", [{"vector": q.tolist(), "limit": 10} for q in queries])
    assert recall(_ids(got), exact_topk(base[:2100], queries, 10), 10) >= 0.95


def test_query_sample_refits_ood(server: Callable[..., Any], data: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = data
    with server() as c:
        _load(c, "ood", CONFIGS["leanvec_ood"][0], base)
        first = c.get_collection("ood").index
        assert first["query_sample"] == 0
        assert c.add_query_sample("ood", list(queries[:30])) == 30
        refit = wait_trained(c, "ood", after=float(first["trained_at"]))
        assert refit["query_sample"] == 30
        assert c.add_query_sample("ood", list(queries[30:40]), replace=True) == 10
        wait_trained(c, "ood", after=float(refit["trained_at"]))
    with server() as c:  # the posted sample is durable and the fit matches it: no refit on restart
        info = c.get_collection("ood").index
        assert info["query_sample"] == 10
        time.sleep(0.5)
        assert c.get_collection("ood").index["trained_at"] == info["trained_at"]


def test_query_reservoir_collects_searches(client: NestorClient, data: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = data
    config = {"reduce": {"type": "leanvec", "dim": 16, "mode": "ood", "query_reservoir": True, "reservoir_size": 32}}
    _load(client, "res", config, base)
    for q in queries:
        client.search("res", q, limit=1)
    assert client.get_collection("res").index["query_sample"] == 32


def test_per_query_overrides(client: NestorClient, data: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = data
    _load(client, "m", CONFIGS["pca_matryoshka_funnel"][0], base)
    truth = exact_topk(base, queries, 10)

    def run(params: dict[str, Any]) -> float:
        got = client.search_batch("m", [{"vector": q.tolist(), "limit": 10, "params": params} for q in queries])
        return recall(_ids(got), truth, 10)

    assert run({"rescore": False, "funnel": []}) < run({}) <= run({"funnel": [{"dim": 16, "limit": 200}]})
    assert run({"oversampling": 1, "funnel": []}) <= run({"oversampling": 8, "funnel": []})


@pytest.mark.parametrize(
    "config",
    [
        {"reduce": {"type": "leanvec", "dim": 64}},
        {"reduce": {"type": "matryoshka", "dim": 16, "funnel": [{"dim": 8, "limit": 10}]}},
        {"quantize": {"type": "int8"}, "index": {"type": "ivf_pq"}},
        {"quantize": {"type": "binary", "bits": 3}},
        {"rerank": {"oversampling": 0.5}},
        {"reduce": {"type": "leanvec", "dim": 16, "mode": "ood", "rescale": True}},
    ],
)
def test_bad_configs_are_refused(client: NestorClient, config: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as err:
        client.create_collection("bad", dim=DIM, **config)
    assert err.value.status == 422
    assert "bad" not in [c.name for c in client.list_collections()]


def test_bad_requests_change_nothing(client: NestorClient, data: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = data
    client.create_collection("plain", dim=DIM)
    client.upload("plain", ids=[1, 2], vectors=base[:2])
    with pytest.raises(ApiError) as err:
        client.search("plain", queries[0], params={"funnel": [{"dim": 8, "limit": 10}]})
    assert err.value.status == 400
    with pytest.raises(ApiError) as err:
        client.add_query_sample("plain", list(queries[:3]))
    assert err.value.status == 400
    client.create_collection("o", dim=DIM, reduce={"type": "leanvec", "dim": 8, "mode": "ood"})
    with pytest.raises(ApiError) as err:
        client.add_query_sample("o", [[0.0] * 5])
    assert err.value.status == 422
    with pytest.raises(ApiError) as err:
        client.add_query_sample("o", [[float("nan")] * DIM])
    assert err.value.status == 422
    assert client.get_collection("o").index["query_sample"] == 0
