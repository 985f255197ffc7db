"""API keys on the Qdrant surface work as on Nestor's own routes: the `api-key` header (what qdrant-client
sends) or a bearer token; none or a wrong one is 401, a role too low 403; the version root is public."""

from __future__ import annotations

import httpx
import pytest
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from tests.e2e.serverproc import ServerProcess
from tests.qdrant.conftest import ADMIN, READ, SCOPED, WRITE, connect

pytestmark = pytest.mark.e2e


def test_keys_and_roles(server: ServerProcess) -> None:
    admin = connect(server, ADMIN)
    admin.create_collection("sec", vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    writer, reader = connect(server, WRITE), connect(server, READ)
    writer.upsert("sec", [m.PointStruct(id=1, vector=[1, 0])])
    assert reader.count("sec").count == 1
    assert reader.query_points("sec", query=[1, 0]).points[0].id == 1
    with pytest.raises(UnexpectedResponse) as exc:
        reader.upsert("sec", [m.PointStruct(id=2, vector=[1, 0])])
    assert exc.value.status_code == 403
    assert exc.value.structured()["status"]["error"].startswith("Forbidden: this operation needs the write role")
    with pytest.raises(UnexpectedResponse) as exc:
        writer.create_collection("sec2", vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    assert exc.value.status_code == 403
    for bad in (None, "not-a-key"):
        with pytest.raises(UnexpectedResponse) as exc:
            connect(server, bad, check_compatibility=False).get_collections()
        assert exc.value.status_code == 401
    assert admin.count("sec").count == 1  # the refused writes changed nothing
    bearer = httpx.post(
        f"{server.url}/qdrant/collections/sec/points/count", json={}, headers={"authorization": f"Bearer {READ}"}
    )
    assert bearer.status_code == 200 and bearer.json()["result"] == {"count": 1}
    # The root (its version, which qdrant-client checks at start) and the probes need no key, as in Qdrant.
    root = httpx.get(f"{server.url}/qdrant")
    assert root.status_code == 200 and root.json()["version"].startswith("1.")
    assert httpx.get(f"{server.url}/qdrant/healthz").status_code == 200
    assert httpx.get(f"{server.url}/qdrant/readyz").status_code == 200


def test_a_scoped_key_reads_only_its_filter(server: ServerProcess) -> None:
    admin = connect(server, ADMIN)
    admin.create_collection("tenanted", vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    admin.create_collection("other", vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    admin.upsert(
        "tenanted",
        [m.PointStruct(id=i, vector=[1.0, float(i)], payload={"tenant": "a" if i < 3 else "b"}) for i in range(8)],
    )
    scoped = connect(server, SCOPED)
    assert [c.name for c in scoped.get_collections().collections] == ["tenanted"]
    assert scoped.count("tenanted").count == 3
    assert sorted(int(p.id) for p in scoped.query_points("tenanted", query=[0.0, 1.0], limit=8).points) == [0, 1, 2]
    records, _ = scoped.scroll("tenanted", limit=8)
    assert [r.id for r in records] == [0, 1, 2]
    assert [r.id for r in scoped.retrieve("tenanted", [1, 5])] == [1]
    flt = m.Filter(must=[m.FieldCondition(key="tenant", match=m.MatchValue(value="b"))])
    assert scoped.count("tenanted", count_filter=flt).count == 0
    assert sorted(int(p.id) for p in scoped.query_points("tenanted", query=2, limit=8).points) == [0, 1]
    with pytest.raises(UnexpectedResponse) as exc:  # a point outside the scope cannot serve as the query either
        scoped.query_points("tenanted", query=5)
    assert exc.value.status_code == 404
    for call in (
        lambda: scoped.count("other"),
        lambda: scoped.upsert("tenanted", [m.PointStruct(id=1, vector=[1, 0])]),
        lambda: scoped.get_collection("tenanted"),  # its counts cover every point
    ):
        with pytest.raises(UnexpectedResponse) as exc:
            call()
        assert exc.value.status_code == 403


def test_request_metrics_label_the_qdrant_routes_apart(server: ServerProcess) -> None:
    admin = connect(server, ADMIN)
    admin.create_collection("metered", vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    admin.upsert("metered", [m.PointStruct(id=i, vector=[1.0, i]) for i in range(3)])
    admin.query_points("metered", query=[1.0, 0.0])
    admin.query_batch_points("metered", [m.QueryRequest(query=[1.0, 0.0]), m.QueryRequest(query=[0.0, 1.0])])
    admin.count("metered")
    text = httpx.get(f"{server.url}/metrics", headers={"api-key": ADMIN}).text
    assert 'route="/qdrant/collections/{name}/points/query"' in text
    assert 'route="/qdrant/collections/{name}/points/count"' in text
    assert 'route="/collections/{name}/points/count"' not in text  # nothing native was called
    # Nestor's monitor counts this surface's searches and upserts like its own (dashboard, metrics, probe)
    assert 'nestor_search_queries_total{collection="metered"} 3.0' in text
    assert 'nestor_upserted_points_total{collection="metered"} 3.0' in text
