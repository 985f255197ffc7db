"""Collections through qdrant-client: create (plain, named, HNSW and quantization settings), info, exists,
list, update, delete, aliases, payload indexes; and what is refused, in Qdrant's error shape."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from tests.e2e.serverproc import ServerProcess
from tests.qdrant.conftest import ADMIN, connect_async

pytestmark = pytest.mark.e2e


def _error(exc: pytest.ExceptionInfo[UnexpectedResponse]) -> str:
    body = exc.value.structured()
    assert set(body) == {"status", "time"}, body
    message: str = body["status"]["error"]
    return message


def test_create_get_exists_list_delete(client: QdrantClient) -> None:
    assert client.create_collection("plain", vectors_config=m.VectorParams(size=8, distance=m.Distance.COSINE))
    assert client.collection_exists("plain")
    assert not client.collection_exists("absent")
    assert "plain" in [c.name for c in client.get_collections().collections]
    info = client.get_collection("plain")
    assert info.status == m.CollectionStatus.GREEN
    assert info.points_count == 0
    params = info.config.params.vectors
    assert isinstance(params, m.VectorParams)
    assert (params.size, params.distance) == (8, m.Distance.COSINE)
    client.upsert("plain", [m.PointStruct(id=i, vector=[float(i + 1)] * 8) for i in range(5)])
    info = client.get_collection("plain")
    assert info.points_count == 5
    assert info.indexed_vectors_count is not None and info.indexed_vectors_count <= 5
    assert client.delete_collection("plain") is True
    assert not client.collection_exists("plain")
    assert client.delete_collection("plain") is False  # already gone


def test_named_vectors_hnsw_and_quantization_map_to_nestor(client: QdrantClient, server: ServerProcess) -> None:
    client.create_collection(
        "named",
        vectors_config={
            "text": m.VectorParams(size=4, distance=m.Distance.DOT, hnsw_config=m.HnswConfigDiff(m=8, ef_construct=64)),
            "image": m.VectorParams(size=3, distance=m.Distance.EUCLID, on_disk=True),
        },
        quantization_config=m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8)),
    )
    # Nestor's own API shows the config it made: the mapping, not only an echo of the request.
    native = httpx.get(f"{server.url}/collections/named", headers={"api-key": ADMIN}).json()["result"]["config"]
    text, image = native["vectors"]["text"], native["vectors"]["image"]
    assert (text["dim"], text["metric"], text["index"]["m"], text["index"]["ef_construction"]) == (4, "dot", 8, 64)
    assert text["quantize"] == {"type": "int8"}
    assert (image["dim"], image["metric"], image["on_disk"]) == (3, "l2", True)
    vectors = client.get_collection("named").config.params.vectors
    assert isinstance(vectors, dict)
    assert vectors["text"].distance == m.Distance.DOT and vectors["image"].distance == m.Distance.EUCLID
    assert vectors["text"].hnsw_config is not None and vectors["text"].hnsw_config.m == 8
    assert isinstance(vectors["text"].quantization_config, m.ScalarQuantization)


def test_hnsw_m_zero_is_a_flat_index(client: QdrantClient, server: ServerProcess) -> None:
    client.create_collection(
        "flat", vectors_config=m.VectorParams(size=2, distance=m.Distance.COSINE), hnsw_config=m.HnswConfigDiff(m=0)
    )
    native = httpx.get(f"{server.url}/collections/flat", headers={"api-key": ADMIN}).json()["result"]["config"]
    assert native["index"] == {"type": "flat"}


def test_second_create_is_409(client: QdrantClient) -> None:
    client.create_collection("twice", vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    with pytest.raises(UnexpectedResponse) as exc:
        client.create_collection("twice", vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    assert exc.value.status_code == 409
    assert "already exists" in _error(exc)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"vectors_config": m.VectorParams(size=2, distance=m.Distance.MANHATTAN)}, "Manhattan"),
        ({"vectors_config": {}}, "vectors"),  # no vector at all (sparse only: tests/qdrant/test_hybrid.py)
        (
            {
                "vectors_config": m.VectorParams(size=8, distance=m.Distance.COSINE),
                "quantization_config": m.ProductQuantization(product=m.ProductQuantizationConfig(compression="x4")),
            },
            "product",
        ),
    ],
)
def test_unsupported_settings_are_refused(client: QdrantClient, kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(UnexpectedResponse) as exc:
        client.create_collection("refused", **kwargs)  # type: ignore[arg-type]
    assert exc.value.status_code == 400
    assert needle in _error(exc)
    assert not client.collection_exists("refused")  # nothing made


def test_update_accepts_the_harmless_and_refuses_the_rest(client: QdrantClient) -> None:
    client.create_collection("upd", vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    assert client.update_collection("upd", optimizers_config=m.OptimizersConfigDiff(indexing_threshold=1000))
    with pytest.raises(UnexpectedResponse) as exc:
        client.update_collection("upd", hnsw_config=m.HnswConfigDiff(m=32))
    assert exc.value.status_code == 400 and "hnsw_config" in _error(exc)
    with pytest.raises(UnexpectedResponse) as exc:
        client.update_collection("absent", optimizers_config=m.OptimizersConfigDiff(indexing_threshold=1000))
    assert exc.value.status_code == 404
    assert _error(exc) == "Not found: Collection `absent` doesn't exist!"


def _ids(client: QdrantClient, name: str) -> set[int]:
    return {int(p.id) for p in client.query_points(name, query=[1.0, 0.0], limit=10).points}


def test_aliases_switch_blue_green_atomically(client: QdrantClient) -> None:
    for name, ids in (("blue", range(3)), ("green", range(10, 14))):
        client.create_collection(name, vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
        client.upsert(name, [m.PointStruct(id=i, vector=[1.0, float(i)]) for i in ids])
    assert client.get_aliases().aliases == []
    assert client.update_collection_aliases(
        [m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name="blue", alias_name="prod"))]
    )
    assert _ids(client, "prod") == {0, 1, 2}  # reads and writes through the alias reach blue
    client.upsert("prod", [m.PointStruct(id=5, vector=[1.0, 5.0])])
    assert _ids(client, "blue") == {0, 1, 2, 5}
    assert client.collection_exists("prod")
    assert [(a.alias_name, a.collection_name) for a in client.get_collection_aliases("blue").aliases] == [
        ("prod", "blue")
    ]
    # the switch: delete and create in one request
    client.update_collection_aliases(
        [
            m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name="prod")),
            m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name="green", alias_name="prod")),
        ]
    )
    assert _ids(client, "prod") == {10, 11, 12, 13}
    # a batch whose last action fails changes nothing
    with pytest.raises(UnexpectedResponse) as exc:
        client.update_collection_aliases(
            [
                m.RenameAliasOperation(rename_alias=m.RenameAlias(old_alias_name="prod", new_alias_name="live")),
                m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name="absent")),
            ]
        )
    assert exc.value.status_code == 404 and "absent" in _error(exc)
    assert [(a.alias_name, a.collection_name) for a in client.get_aliases().aliases] == [("prod", "green")]
    # an alias never shadows a collection, nor a collection an alias
    with pytest.raises(UnexpectedResponse) as exc:
        client.update_collection_aliases(
            [m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name="green", alias_name="blue"))]
        )
    assert exc.value.status_code == 400 and "collection has that name" in _error(exc)
    with pytest.raises(UnexpectedResponse) as exc:
        client.create_collection("prod", vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    assert exc.value.status_code == 409
    with pytest.raises(UnexpectedResponse) as exc:
        client.update_collection_aliases(
            [m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name="absent", alias_name="x"))]
        )
    assert exc.value.status_code == 404
    # deleting a collection drops its aliases
    client.delete_collection("green")
    assert client.get_aliases().aliases == []
    assert not client.collection_exists("prod")
    client.delete_collection("blue")


def test_payload_index_create_and_delete(client: QdrantClient) -> None:
    client.create_collection("pidx", vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    client.upsert(
        "pidx", [m.PointStruct(id=i, vector=[1.0, i], payload={"city": f"c{i % 3}", "n": i}) for i in range(9)]
    )
    res = client.create_payload_index("pidx", "city", m.PayloadSchemaType.KEYWORD)
    assert res.status == m.UpdateStatus.COMPLETED
    client.create_payload_index("pidx", "n", m.IntegerIndexParams(type=m.IntegerIndexType.INTEGER, range=True))
    client.create_payload_index("pidx", "tenant", m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, is_tenant=True))
    schema = client.get_collection("pidx").payload_schema
    assert schema["city"].data_type == m.PayloadSchemaType.KEYWORD and schema["city"].points == 9
    assert schema["n"].data_type == m.PayloadSchemaType.INTEGER
    assert schema["tenant"].params is not None
    flt = m.Filter(must=[m.FieldCondition(key="city", match=m.MatchValue(value="c1"))])
    assert client.count("pidx", count_filter=flt).count == 3
    client.delete_payload_index("pidx", "city")
    assert "city" not in client.get_collection("pidx").payload_schema
    assert client.count("pidx", count_filter=flt).count == 3  # the filter still answers, unindexed
    with pytest.raises(UnexpectedResponse) as exc:
        client.create_payload_index("pidx", "where", m.PayloadSchemaType.GEO)
    assert exc.value.status_code == 400 and "geo" in _error(exc)


def test_async_client_collections(server: ServerProcess) -> None:
    async def run() -> None:
        c = connect_async(server)
        try:
            await c.create_collection("async-c", vectors_config=m.VectorParams(size=3, distance=m.Distance.EUCLID))
            assert await c.collection_exists("async-c")
            info = await c.get_collection("async-c")
            assert isinstance(info.config.params.vectors, m.VectorParams)
            assert info.config.params.vectors.distance == m.Distance.EUCLID
            assert "async-c" in [x.name for x in (await c.get_collections()).collections]
            assert await c.delete_collection("async-c")
            assert not await c.collection_exists("async-c")
        finally:
            await c.close()

    asyncio.run(run())


def test_snapshots_create_list_recover_delete(client: QdrantClient, server: ServerProcess) -> None:
    client.create_collection("snap", vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    client.upsert("snap", [m.PointStruct(id=i, vector=[1.0, i], payload={"i": i}) for i in range(6)])
    snap = client.create_snapshot("snap")
    assert snap is not None and snap.size > 0 and snap.checksum is not None and len(snap.checksum) == 64
    assert [s.name for s in client.list_snapshots("snap")] == [snap.name]
    r = httpx.get(f"{server.url}/qdrant/collections/snap/snapshots/{snap.name}", headers={"api-key": ADMIN})
    assert r.status_code == 200 and len(r.content) == snap.size
    client.delete("snap", m.PointIdsList(points=[0, 1, 2]))
    assert client.count("snap").count == 3
    # the location as Qdrant's docs give it: the snapshot's URL on the server
    location = f"{server.url}/qdrant/collections/snap/snapshots/{snap.name}"
    assert client.recover_snapshot("snap", location, checksum=snap.checksum) is True
    assert client.count("snap").count == 6
    # into another collection, by name of the source's snapshot URL path
    assert client.recover_snapshot("snap-copy", f"collections/snap/snapshots/{snap.name}")
    assert client.retrieve("snap-copy", [5])[0].payload == {"i": 5}
    with pytest.raises(UnexpectedResponse) as exc:
        client.recover_snapshot("snap", "https://elsewhere.example/x.snapshot")
    assert exc.value.status_code == 400
    with pytest.raises(UnexpectedResponse) as exc:
        client.recover_snapshot("snap", snap.name, checksum="0" * 64)
    assert exc.value.status_code == 400 and "checksum" in _error(exc)
    assert client.delete_snapshot("snap", snap.name) is True
    assert client.list_snapshots("snap") == []
    with pytest.raises(UnexpectedResponse) as exc:
        client.delete_snapshot("snap", snap.name)
    assert exc.value.status_code == 404 and _error(exc).startswith("Not found")


def test_collections_made_natively_read_through_the_qdrant_surface(client: QdrantClient, server: ServerProcess) -> None:
    """Nestor-only settings (IVF-PQ, LeanVec, multivectors) still give a CollectionInfo qdrant-client parses."""
    h = {"api-key": ADMIN}
    configs = {
        "native-ivf": {"dim": 16, "metric": "l2", "index": {"type": "ivf_pq"}},
        "native-mixed": {
            "vectors": {
                "lean": {"dim": 32, "reduce": {"type": "leanvec", "dim": 8}},
                "tokens": {"dim": 8, "multivector": {"type": "maxsim"}},
            }
        },
    }
    for name, cfg in configs.items():
        assert httpx.put(f"{server.url}/collections/{name}", json=cfg, headers=h).status_code == 200
    ivf = client.get_collection("native-ivf").config.params.vectors
    assert isinstance(ivf, m.VectorParams) and (ivf.size, ivf.distance) == (16, m.Distance.EUCLID)
    mixed = client.get_collection("native-mixed").config.params.vectors
    assert isinstance(mixed, dict) and mixed["lean"].size == 32
    assert mixed["tokens"].multivector_config is not None
    assert {"native-ivf", "native-mixed"} <= {c.name for c in client.get_collections().collections}
