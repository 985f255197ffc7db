"""API keys on the Qdrant surface work as on Nestor's own routes: the `api-key` header (what qdrant-client
sends) or a bearer token; none or a wrong one is 401, a role too low 403; the version root is public."""

from __future__ import annotations

import httpx
import pytest
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from tests.e2e.serverproc import ServerProcess
from tests.qdrant.conftest import ADMIN, READ, WRITE, connect

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
