"""Points through qdrant-client: upsert (list and batch), retrieve, delete by ids and filter, scroll pages,
count, payload set/overwrite/delete/clear, vector update/delete, batch update; ids (integers, UUIDs); bad
input answered in Qdrant's error shape and changing nothing."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from tests.e2e.serverproc import ServerProcess
from tests.qdrant.conftest import ADMIN, connect_async

pytestmark = pytest.mark.e2e


def _fresh(client: QdrantClient, name: str, size: int = 3) -> None:
    client.create_collection(name, vectors_config=m.VectorParams(size=size, distance=m.Distance.DOT))


def _payloads(client: QdrantClient, name: str) -> dict[int | str, dict[str, object]]:
    records, nxt = client.scroll(name, limit=1000)
    assert nxt is None
    return {r.id: dict(r.payload or {}) for r in records}


def test_upsert_list_and_batch_with_integer_and_uuid_ids(client: QdrantClient) -> None:
    _fresh(client, "ups")
    u = uuid.uuid4()
    res = client.upsert(
        "ups",
        [m.PointStruct(id=1, vector=[1, 0, 0], payload={"a": 1}), m.PointStruct(id=str(u), vector=[0, 1, 0])],
    )
    assert res.status == m.UpdateStatus.COMPLETED
    client.upsert("ups", m.Batch(ids=[2, 3], vectors=[[0, 0, 1], [1, 1, 1]], payloads=[{"b": 2}, {"b": 3}]))
    assert client.count("ups").count == 4
    # Qdrant reads a UUID in any spelling as the same id: upper case, no hyphens.
    got = client.retrieve("ups", [u.hex.upper(), 2, 99], with_vectors=True)
    assert [r.id for r in got] == [str(u), 2]
    assert got[0].vector == [0.0, 1.0, 0.0] and got[1].payload == {"b": 2}
    client.upsert("ups", [m.PointStruct(id=1, vector=[2, 0, 0], payload={"a": 5})])  # same id overwrites
    one = client.retrieve("ups", [1], with_vectors=True)[0]
    assert one.payload == {"a": 5} and one.vector == [2.0, 0.0, 0.0]
    assert client.count("ups").count == 4
    acked = client.upsert("ups", [m.PointStruct(id=7, vector=[0, 0, 0])], wait=False)
    assert acked.status == m.UpdateStatus.ACKNOWLEDGED
    assert client.count("ups").count == 5  # acknowledged is applied too


def test_bad_input_is_400_in_qdrants_shape_and_changes_nothing(client: QdrantClient, server: ServerProcess) -> None:
    _fresh(client, "bad")
    client.upsert("bad", [m.PointStruct(id=1, vector=[1, 0, 0])])
    with pytest.raises(UnexpectedResponse) as exc:  # the second point has the wrong dimension: the batch is refused
        client.upsert("bad", [m.PointStruct(id=2, vector=[1, 0, 0]), m.PointStruct(id=3, vector=[1, 0])])
    assert exc.value.status_code == 400
    body = exc.value.structured()
    assert "expected dim: 3, got 2" in body["status"]["error"] and "time" in body
    assert client.count("bad").count == 1
    r = httpx.put(
        f"{server.url}/qdrant/collections/bad/points",
        json={"points": [{"id": "not-a-uuid", "vector": [1, 0, 0]}]},
        headers={"api-key": ADMIN},
    )
    assert r.status_code == 400 and "UUID" in r.json()["status"]["error"]
    r = httpx.put(f"{server.url}/qdrant/collections/bad/points", json={"points": "x"}, headers={"api-key": ADMIN})
    assert r.status_code == 400 and r.json()["status"]["error"].startswith("Format error in JSON body")
    r = httpx.put(
        f"{server.url}/qdrant/collections/bad/points",
        content=b"{not json",
        headers={"api-key": ADMIN, "content-type": "application/json"},
    )
    assert r.status_code == 400 and "status" in r.json()
    with pytest.raises(UnexpectedResponse) as exc:
        client.upsert("missing", [m.PointStruct(id=1, vector=[1, 0, 0])])
    assert exc.value.status_code == 404
    assert client.count("bad").count == 1


def test_delete_by_ids_and_by_filter(client: QdrantClient) -> None:
    _fresh(client, "del")
    client.upsert("del", [m.PointStruct(id=i, vector=[1, i, 0], payload={"i": i}) for i in range(10)])
    client.delete("del", m.PointIdsList(points=[0, 1]))
    client.delete("del", m.FilterSelector(filter=m.Filter(must=[m.FieldCondition(key="i", range=m.Range(gte=7))])))
    assert sorted(_payloads(client, "del")) == [2, 3, 4, 5, 6]


def test_scroll_pages_with_next_page_offset(client: QdrantClient) -> None:
    _fresh(client, "scr")
    client.upsert("scr", [m.PointStruct(id=i, vector=[1, i, 0], payload={"odd": i % 2 == 1}) for i in range(25)])
    seen: list[int] = []
    offset = None
    pages = 0
    while True:
        records, offset = client.scroll(
            "scr",
            scroll_filter=m.Filter(must=[m.FieldCondition(key="odd", match=m.MatchValue(value=True))]),
            limit=5,
            offset=offset,
        )
        seen += [int(r.id) for r in records]
        pages += 1
        if offset is None:
            break
    assert seen == list(range(1, 25, 2)) and pages == 3
    records, _ = client.scroll("scr", limit=2, with_payload=False, with_vectors=True)
    assert records[0].payload is None and records[0].vector == [1.0, 0.0, 0.0]


def test_payload_set_overwrite_delete_clear(client: QdrantClient, server: ServerProcess) -> None:
    _fresh(client, "pay")
    client.upsert(
        "pay",
        [m.PointStruct(id=i, vector=[1, i, 0], payload={"i": i, "keep": True, "obj": {"x": 1}}) for i in range(4)],
    )
    client.set_payload("pay", {"tag": "new"}, points=[0, 1])
    client.set_payload("pay", {"y": 2}, points=[0], key="obj")  # merged into the object at the key
    client.set_payload(
        "pay", {"tag": "f"}, points=m.Filter(must=[m.FieldCondition(key="i", match=m.MatchValue(value=3))])
    )
    # ids and a filter together: only the listed points that match it
    r = httpx.post(
        f"{server.url}/qdrant/collections/pay/points/payload",
        json={"payload": {"both": 1}, "points": [0, 1], "filter": {"must": [{"key": "i", "match": {"value": 1}}]}},
        headers={"api-key": ADMIN},
    )
    assert r.status_code == 200
    client.overwrite_payload("pay", {"only": 1}, points=[2])
    client.delete_payload("pay", ["keep", "obj.x"], points=[1])
    client.clear_payload("pay", m.PointIdsList(points=[3]))
    got = _payloads(client, "pay")
    assert got[0] == {"i": 0, "keep": True, "obj": {"x": 1, "y": 2}, "tag": "new"}  # no "both": i is not 1
    assert got[1] == {"i": 1, "obj": {}, "tag": "new", "both": 1}
    assert got[2] == {"only": 1}
    assert got[3] == {}
    # the vectors are untouched by payload updates
    assert client.retrieve("pay", [1], with_vectors=True)[0].vector == [1.0, 1.0, 0.0]


def test_update_and_delete_named_vectors(client: QdrantClient) -> None:
    client.create_collection(
        "vecs",
        vectors_config={
            "a": m.VectorParams(size=2, distance=m.Distance.DOT),
            "b": m.VectorParams(size=3, distance=m.Distance.COSINE),
        },
    )
    client.upsert("vecs", [m.PointStruct(id=1, vector={"a": [1, 0], "b": [0, 0, 1]}, payload={"p": 1})])
    client.update_vectors("vecs", [m.PointVectors(id=1, vector={"a": [0, 5]})])
    r = client.retrieve("vecs", [1], with_vectors=True)[0]
    assert r.vector == {"a": [0.0, 5.0], "b": [0.0, 0.0, 1.0]} and r.payload == {"p": 1}
    client.delete_vectors("vecs", ["b"], m.PointIdsList(points=[1]))
    r = client.retrieve("vecs", [1], with_vectors=True)[0]
    assert r.vector == {"a": [0.0, 5.0]}
    hits = client.query_points("vecs", query=[0, 0, 1], using="b").points
    assert hits == []  # no point has b any more
    with pytest.raises(UnexpectedResponse) as exc:
        client.delete_vectors("vecs", ["nope"], m.PointIdsList(points=[1]))
    assert exc.value.status_code == 400 and "nope" in exc.value.structured()["status"]["error"]


def test_batch_update(client: QdrantClient) -> None:
    _fresh(client, "bat")
    results = client.batch_update_points(
        "bat",
        [
            m.UpsertOperation(upsert=m.PointsList(points=[m.PointStruct(id=i, vector=[1, i, 0]) for i in range(5)])),
            m.SetPayloadOperation(set_payload=m.SetPayload(payload={"s": 1}, points=[0, 1])),
            m.DeleteOperation(delete=m.PointIdsList(points=[4])),
            m.UpdateVectorsOperation(update_vectors=m.UpdateVectors(points=[m.PointVectors(id=0, vector=[9, 9, 9])])),
            m.ClearPayloadOperation(clear_payload=m.PointIdsList(points=[1])),
        ],
    )
    assert len(results) == 5 and all(r.status == m.UpdateStatus.COMPLETED for r in results)
    got = _payloads(client, "bat")
    assert sorted(got) == [0, 1, 2, 3] and got[0] == {"s": 1} and got[1] == {}
    assert client.retrieve("bat", [0], with_vectors=True)[0].vector == [9.0, 9.0, 9.0]


def test_get_one_point_by_path(client: QdrantClient, server: ServerProcess) -> None:
    _fresh(client, "one")
    u = str(uuid.uuid4())
    client.upsert("one", [m.PointStruct(id=u, vector=[1, 2, 3], payload={"k": "v"})])
    r = httpx.get(f"{server.url}/qdrant/collections/one/points/{u}", headers={"api-key": ADMIN})
    assert r.status_code == 200
    assert r.json()["result"] == {"id": u, "payload": {"k": "v"}, "vector": [1.0, 2.0, 3.0]}
    r = httpx.get(f"{server.url}/qdrant/collections/one/points/5", headers={"api-key": ADMIN})
    assert r.status_code == 404 and "No point with id 5" in r.json()["status"]["error"]


def test_async_client_points(server: ServerProcess) -> None:
    async def run() -> None:
        c = connect_async(server)
        try:
            await c.create_collection("async-p", vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
            await c.upsert("async-p", [m.PointStruct(id=i, vector=[1, i], payload={"i": i}) for i in range(6)])
            assert (await c.count("async-p")).count == 6
            await c.set_payload("async-p", {"s": True}, points=[1])
            assert (await c.retrieve("async-p", [1]))[0].payload == {"i": 1, "s": True}
            records, nxt = await c.scroll("async-p", limit=4)
            assert [r.id for r in records] == [0, 1, 2, 3] and nxt == 4
            await c.delete("async-p", m.PointIdsList(points=[0]))
            assert (await c.count("async-p")).count == 5
        finally:
            await c.close()

    asyncio.run(run())


_KEYS = st.sampled_from(["a", "b", "c"])
_OPS = st.one_of(
    st.tuples(st.just("set"), st.dictionaries(_KEYS, st.integers(0, 9), min_size=1, max_size=2)),
    st.tuples(st.just("overwrite"), st.dictionaries(_KEYS, st.integers(0, 9), max_size=2)),
    st.tuples(st.just("delete"), st.lists(_KEYS, min_size=1, max_size=2, unique=True)),
    st.tuples(st.just("clear"), st.none()),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(_OPS, st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True)), max_size=5))
def test_payload_updates_match_a_dict_model(
    client: QdrantClient, ops: list[tuple[tuple[str, object], list[int]]]
) -> None:
    """Random sequences of payload updates on random points leave exactly the payloads a dict model predicts."""
    if not client.collection_exists("model"):
        _fresh(client, "model")
    client.upsert("model", [m.PointStruct(id=i, vector=[1, i, 0], payload={"a": i}) for i in range(4)])
    model: dict[int, dict[str, object]] = {i: {"a": i} for i in range(4)}
    for (kind, arg), ids in ops:
        for i in ids:
            if kind == "set":
                model[i].update(arg)  # type: ignore[arg-type]
            elif kind == "overwrite":
                model[i] = dict(arg)  # type: ignore[call-overload]
            elif kind == "delete":
                for k in arg:  # type: ignore[attr-defined]
                    model[i].pop(k, None)
            else:
                model[i] = {}
        if kind == "set":
            client.set_payload("model", arg, points=ids)  # type: ignore[arg-type]
        elif kind == "overwrite":
            client.overwrite_payload("model", arg, points=ids)  # type: ignore[arg-type]
        elif kind == "delete":
            client.delete_payload("model", arg, points=ids)  # type: ignore[arg-type]
        else:
            client.clear_payload("model", m.PointIdsList(points=ids))
    assert _payloads(client, "model") == model


def test_upload_collection_and_points(client: QdrantClient) -> None:
    """The client's bulk helpers: batches of the batch form, ids generated as UUIDs when not given."""
    _fresh(client, "bulk", size=4)
    vectors = np.random.default_rng(1).standard_normal((130, 4)).astype(np.float32)
    client.upload_collection("bulk", vectors=vectors, payload=({"n": i} for i in range(130)), batch_size=50)
    assert client.count("bulk").count == 130
    records, _ = client.scroll("bulk", limit=3)
    assert all(str(uuid.UUID(str(r.id))) == r.id for r in records)
    client.upload_points("bulk", [m.PointStruct(id=i, vector=[1.0, 0, 0, 0]) for i in range(10)], batch_size=4)
    assert client.count("bulk").count == 140


def test_payload_size_limit_holds_for_upserts_and_updates(client: QdrantClient) -> None:
    """max_payload_bytes (1 MiB by default) bounds a point's payload however it grows: 413, nothing written."""
    _fresh(client, "big")
    client.upsert("big", [m.PointStruct(id=1, vector=[1, 0, 0], payload={"a": 1})])
    with pytest.raises(UnexpectedResponse) as exc:
        client.upsert("big", [m.PointStruct(id=2, vector=[1, 0, 0], payload={"x": "y" * 1_100_000})])
    assert exc.value.status_code == 413
    client.set_payload("big", {"b1": "y" * 600_000}, points=[1])
    with pytest.raises(UnexpectedResponse) as exc:  # each half fits; together they do not
        client.set_payload("big", {"b2": "y" * 600_000}, points=[1])
    assert exc.value.status_code == 413
    assert client.count("big").count == 1
    assert set(client.retrieve("big", [1])[0].payload or {}) == {"a", "b1"}
