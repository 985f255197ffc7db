"""The Python client against httpx.MockTransport: what goes on the wire, and what comes back."""

from __future__ import annotations

import base64
import copy
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import msgpack
import numpy as np
import orjson
import pytest

import nestor_client
from nestor_client import (
    ApiError,
    AsyncNestorClient,
    CollectionConfig,
    FieldCondition,
    Filter,
    HnswIndexConfig,
    MatchExcept,
    NestorClient,
    NestorError,
    NestorTransportError,
    Point,
    QueryResult,
    Range,
    ScoredPoint,
    SearchRequest,
    ServerError,
    errors,
)

Reply = Callable[[httpx.Request], httpx.Response]
BASE = "http://nestor.test"
MSGPACK = "application/msgpack"

INFO = {
    "name": "a",
    "config": {
        "dim": 4,
        "metric": "cosine",
        "index": {"type": "hnsw", "m": 16, "ef_construction": 200, "ef": 64},
    },
    "count": 3,
    "status": "green",
    "seq": 5,
    "index": {"type": "hnsw", "state": "ready"},
    "segments": [],
    "memory": {},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def reply(result: Any, *, wire: str = "json", status: int = 200, **extra: Any) -> httpx.Response:
    body = {"result": result, "time": 0.002, **extra} if status < 400 else result
    if wire == "msgpack":
        return httpx.Response(status, content=msgpack.packb(body), headers={"content-type": MSGPACK})
    return httpx.Response(status, content=orjson.dumps(body), headers={"content-type": "application/json"})


def error_reply(status: int, type_: str, message: str = "nope") -> Reply:
    return lambda _: reply({"error": {"type": type_, "message": message}}, status=status)


def make_client(answer: Reply, **kwargs: Any) -> tuple[NestorClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    http = httpx.Client(transport=httpx.MockTransport(handler), base_url=BASE)
    return NestorClient(http_client=http, **kwargs), seen


def make_async_client(answer: Reply, **kwargs: Any) -> tuple[AsyncNestorClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url=BASE)
    return AsyncNestorClient(http_client=http, **kwargs), seen


def body(request: httpx.Request) -> Any:
    if request.headers.get("content-type") == MSGPACK:
        return msgpack.unpackb(request.content)
    return orjson.loads(request.content)


def hits(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "score": 1.0 - i / 10, "payload": {"i": i}} for i in range(n)]


# -- envelopes and routes -------------------------------------------------------------------

ROUTES: dict[tuple[str, str], Any] = {
    ("GET", "/healthz"): True,
    ("GET", "/readyz"): True,
    ("GET", "/collections"): {"collections": [{"name": "a", "count": 3}]},
    ("PUT", "/collections/a"): INFO,
    ("GET", "/collections/a"): INFO,
    ("DELETE", "/collections/a"): True,
    ("PUT", "/collections/a/points"): {"upserted": 2, "seq": 8},
    ("POST", "/collections/a/points/delete"): {"deleted": 2, "seq": 9},
    ("POST", "/collections/a/points/get"): [{"id": 1, "payload": {"k": 1}}, {"id": "x"}],
    ("POST", "/collections/a/points/count"): {"count": 7},
}


def route(request: httpx.Request) -> httpx.Response:
    return reply(ROUTES[(request.method, request.url.path)])


def test_envelope_results() -> None:
    client, seen = make_client(route)
    with client:
        assert client.health() is True and client.ready() is True
        assert [(c.name, c.count) for c in client.list_collections()] == [("a", 3)]
        assert client.create_collection("a", dim=4).config.dim == 4
        assert client.get_collection("a").seq == 5
        assert client.delete_collection("a") is True
        up = client.upsert("a", [{"id": 1, "vector": [0.0, 1.0]}, Point(id=2, vector=[1.0, 0.0])])
        assert (up.upserted, up.seq) == (2, 8)
        gone = client.delete("a", ids=[1, 2])
        assert (gone.deleted, gone.seq) == (2, 9)
        records = client.get("a", [1, "x"])
        assert [r.id for r in records] == [1, "x"] and records[0].payload == {"k": 1}
        assert client.count("a", filter={"must": []}) == 7
    assert seen[6].url.params["wait"] == "true"
    assert body(seen[6])["points"][1] == {"id": 2, "vector": [1.0, 0.0]}
    assert body(seen[7]) == {"ids": [1, 2]}
    assert body(seen[8]) == {"ids": [1, "x"], "with_payload": True, "with_vector": False}


def test_headers_carry_key_and_wire() -> None:
    client, seen = make_client(route, api_key="s3cret")
    client.health()
    client.count("a")
    get, post = seen
    assert get.headers["authorization"] == "Bearer s3cret"
    assert get.headers["accept"] == "application/json" and "content-type" not in get.headers
    assert post.headers["content-type"] == "application/json" and body(post) == {}


def test_collection_name_is_quoted() -> None:
    client, seen = make_client(lambda _: reply(True))
    client.delete_collection("a/b")
    assert seen[0].url.raw_path == b"/collections/a%2Fb"


def test_create_collection_merges_config_and_keywords() -> None:
    client, seen = make_client(lambda _: reply(INFO))
    client.create_collection("a", CollectionConfig(dim=4), metric="dot")
    client.create_collection("a", dim=8, index=HnswIndexConfig.model_validate({"m": 8}))
    defaults = CollectionConfig(dim=4).model_dump(mode="json", exclude_none=True)
    assert body(seen[0]) == defaults | {"metric": "dot"}
    assert body(seen[1]) == {"dim": 8, "index": {"type": "hnsw", "m": 8, "ef_construction": 200, "ef": 64}}


# -- errors ---------------------------------------------------------------------------------

ERRORS = [
    ("bad_request", 400, errors.BadRequest),
    ("unauthorized", 401, errors.Unauthorized),
    ("forbidden", 403, errors.Forbidden),
    ("not_found", 404, errors.NotFound),
    ("collection_not_found", 404, errors.CollectionNotFound),
    ("collection_exists", 409, errors.CollectionExists),
    ("payload_too_large", 413, errors.PayloadTooLarge),
    ("unsupported_media_type", 415, errors.UnsupportedMediaType),
    ("unprocessable", 422, errors.Unprocessable),
    ("dimension_mismatch", 422, errors.DimensionMismatch),
    ("invalid_vector", 422, errors.InvalidVector),
    ("invalid_filter", 422, errors.InvalidFilter),
    ("invalid_config", 422, errors.InvalidConfig),
    ("duplicate_id", 422, errors.DuplicateId),
    ("limit_exceeded", 422, errors.LimitExceeded),
    ("validation_error", 422, errors.ValidationError),
    ("internal", 500, errors.ServerError),
    ("not_ready", 503, errors.NotReady),
    ("brand_new_type", 418, errors.ApiError),
    ("brand_new_type", 502, errors.ServerError),
]


@pytest.mark.parametrize(("type_", "status", "cls"), ERRORS)
def test_error_types_map_to_classes(type_: str, status: int, cls: type[ApiError]) -> None:
    client, _ = make_client(error_reply(status, type_, "details here"))
    with pytest.raises(ApiError) as info:
        client.get_collection("a")
    exc = info.value
    assert type(exc) is cls
    assert (exc.status, exc.type, exc.message) == (status, type_, "details here")
    assert str(exc) == f"[{status} {type_}] details here"


def test_error_families() -> None:
    assert issubclass(errors.CollectionNotFound, errors.NotFound)
    assert issubclass(errors.DimensionMismatch, errors.Unprocessable)
    assert issubclass(errors.NotReady, ServerError) and issubclass(ServerError, ApiError)
    assert issubclass(NestorTransportError, NestorError) and not issubclass(NestorTransportError, ApiError)
    exc = copy.deepcopy(errors.InvalidFilter("bad key", status=422, type="invalid_filter"))
    assert type(exc) is errors.InvalidFilter and (exc.status, exc.message) == (422, "bad key")


def test_error_body_that_is_not_an_envelope() -> None:
    html = httpx.Response(502, content=b"<h1>Bad gateway</h1>", headers={"content-type": "text/html"})
    client, _ = make_client(lambda _: html)
    with pytest.raises(ServerError) as info:
        client.health()
    assert (info.value.status, info.value.type) == (502, "unknown") and "Bad gateway" in info.value.message


def test_msgpack_error_body() -> None:
    error = {"error": {"type": "dimension_mismatch", "message": "expected 4"}}
    client, _ = make_client(lambda _: reply(error, wire="msgpack", status=422), wire="msgpack")
    with pytest.raises(errors.DimensionMismatch, match="expected 4"):
        client.search("a", [1.0, 2.0])


def test_unreadable_success_body() -> None:
    client, _ = make_client(lambda _: httpx.Response(200, content=b"not json"))
    with pytest.raises(ApiError) as info:
        client.health()
    assert info.value.type == "invalid_response"


def test_transport_failure() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client, _ = make_client(refuse)
    with pytest.raises(NestorTransportError) as info:
        client.health()
    assert info.value.status == 0 and "refused" in info.value.message


def test_argument_checks_happen_before_io() -> None:
    client, seen = make_client(route)
    with pytest.raises(ValueError, match="not both"):
        client.upsert("a", [{"id": 1, "vector": [1.0]}], ids=[1], vectors=[[1.0]])
    with pytest.raises(ValueError, match="needs points"):
        client.upsert("a", ids=[1])
    with pytest.raises(ValueError, match="exactly one"):
        client.delete("a")
    with pytest.raises(ValueError, match="matrix"):
        client.upsert("a", ids=[1, 2], vectors=[[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match="2 ids but 3 vectors"):
        client.upload("a", [1, 2], np.zeros((3, 4)))
    with pytest.raises(ValueError, match="wire"):
        NestorClient(wire="xml")  # type: ignore[arg-type]
    assert seen == []


# -- vector encoding ------------------------------------------------------------------------


def test_json_matrix_goes_as_little_endian_float32_base64() -> None:
    matrix = np.random.default_rng(0).standard_normal((3, 4))
    client, seen = make_client(lambda _: reply({"upserted": 3, "seq": 1}))
    client.upsert("a", ids=np.arange(3), vectors=matrix.astype(">f8"), payloads=[{"k": 1}, None, {}])
    batch = body(seen[0])["batch"]
    decoded = np.frombuffer(base64.b64decode(batch["vectors"]), dtype="<f4").reshape(3, 4)
    np.testing.assert_array_equal(decoded, matrix.astype(np.float32))
    assert batch["ids"] == [0, 1, 2] and batch["payloads"] == [{"k": 1}, None, {}]


def test_json_search_vector_forms() -> None:
    client, seen = make_client(lambda _: reply(hits(1), strategy="hnsw"))
    client.search("a", [0.5, 0.25])
    client.search("a", np.array([0.5, 0.25]))
    assert body(seen[0])["vector"] == [0.5, 0.25]
    assert np.frombuffer(base64.b64decode(body(seen[1])["vector"]), "<f4").tolist() == [0.5, 0.25]


def test_msgpack_request_and_response_carry_bytes() -> None:
    vectors = np.arange(8, dtype=np.float32).reshape(2, 4)
    answer = [{"id": 1, "score": 0.9, "vector": vectors[1].tobytes()}]

    def respond(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            return reply({"upserted": 2, "seq": 1}, wire="msgpack")
        return reply(answer, wire="msgpack", strategy="exact")

    client, seen = make_client(respond, wire="msgpack")
    assert client.upsert("a", ids=[1, 2], vectors=vectors).upserted == 2
    result = client.search("a", [1.0, 2.0, 3.0, 4.0], with_vector=True)
    put, search = seen
    assert put.headers["content-type"] == MSGPACK and put.headers["accept"] == MSGPACK
    assert body(put)["batch"]["vectors"] == vectors.astype("<f4").tobytes()
    assert body(search)["vector"] == np.array([1, 2, 3, 4], "<f4").tobytes()
    assert result.strategy == "exact" and result[0].vector == [4.0, 5.0, 6.0, 7.0]


def test_base64_response_vectors_are_decoded() -> None:
    vector = base64.b64encode(np.array([1.5, -2.0], "<f4").tobytes()).decode()
    client, _ = make_client(lambda _: reply([{"id": 3, "vector": vector}]))
    assert client.get("a", [3], with_vector=True)[0].vector == [1.5, -2.0]


# -- search ---------------------------------------------------------------------------------


def test_query_result_behaves_like_a_sequence() -> None:
    client, _ = make_client(lambda _: reply(hits(3), strategy="hnsw_filtered"))
    result = client.search("a", [1.0, 0.0], limit=3)
    assert isinstance(result, QueryResult) and isinstance(result[0], ScoredPoint)
    assert len(result) == 3 and [p.id for p in result] == [0, 1, 2]
    assert result[-1].payload == {"i": 2} and [p.id for p in result[1:]] == [1, 2]
    assert (result.strategy, result.time) == ("hnsw_filtered", 0.002)
    assert not QueryResult([], "exact", 0.0)


def test_search_body_dumps_models_and_omits_unset() -> None:
    client, seen = make_client(lambda _: reply([], strategy="exact"))
    flt = Filter(
        must=[FieldCondition(key="tag", match=MatchExcept.model_validate({"except": ["x"]}))],
        must_not=[FieldCondition(key="n", range=Range(gte=2))],
    )
    client.search("a", [1.0], filter=flt, params={"ef": 128}, score_threshold=0.5)
    client.search("a", [1.0], limit=3, offset=2, with_vector=True)
    first, second = body(seen[0]), body(seen[1])
    assert first["filter"] == {
        "must": [{"key": "tag", "match": {"except": ["x"]}}],
        "must_not": [{"key": "n", "range": {"gte": 2.0}}],
    }
    assert first["params"] == {"ef": 128} and first["score_threshold"] == 0.5
    assert second == {"vector": [1.0], "limit": 3, "offset": 2, "with_payload": True, "with_vector": True}


def test_search_batch() -> None:
    answer = reply([hits(2), hits(1)], strategy=["hnsw", "exact_filtered"])
    client, seen = make_client(lambda _: answer)
    searches: list[SearchRequest | dict[str, Any]] = [
        SearchRequest.model_validate({"vector": [1.0, 0.0], "limit": 2}),
        {"vector": np.ones(2), "filter": Filter(must=[])},
    ]
    results = client.search_batch("a", searches)
    assert [len(r) for r in results] == [2, 1]
    assert [r.strategy for r in results] == ["hnsw", "exact_filtered"]
    sent = body(seen[0])["searches"]
    assert seen[0].url.path == "/collections/a/points/search/batch"
    assert sent[0]["vector"] == [1.0, 0.0] and sent[0]["limit"] == 2 and "filter" not in sent[0]
    assert isinstance(sent[1]["vector"], str) and sent[1]["filter"] == {"must": []}


def test_upload_chunks_into_atomic_upserts() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        return reply({"upserted": len(body(request)["batch"]["ids"]), "seq": 1})

    client, seen = make_client(respond)
    vectors = np.arange(25 * 2, dtype=np.float32).reshape(25, 2)
    assert client.upload("a", list(range(25)), vectors, batch_size=10, wait=False) == 25
    assert [body(r)["batch"]["ids"][0] for r in seen] == [0, 10, 20]
    assert all(r.url.params["wait"] == "false" for r in seen)
    last = np.frombuffer(base64.b64decode(body(seen[2])["batch"]["vectors"]), "<f4")
    np.testing.assert_array_equal(last, vectors[20:].ravel())


# -- async twin -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_client_mirrors_sync() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/search"):
            return reply(hits(2), wire="msgpack", strategy="hnsw")
        if request.method == "PUT":
            return reply({"upserted": len(body(request)["batch"]["ids"]), "seq": 2}, wire="msgpack")
        return error_reply(404, "collection_not_found")(request)

    client, seen = make_async_client(respond, wire="msgpack", api_key="k")
    async with client:
        result = await client.search("a", np.zeros(4))
        assert [p.id for p in result] == [0, 1] and result.strategy == "hnsw"
        assert await client.upload("a", [1, 2, 3], np.zeros((3, 4)), batch_size=2) == 3
        with pytest.raises(errors.CollectionNotFound):
            await client.count("a")
    assert len(seen) == 4 and all(r.headers["authorization"] == "Bearer k" for r in seen)


@pytest.mark.anyio
async def test_async_transport_failure() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("too slow", request=request)

    client, _ = make_async_client(timeout)
    with pytest.raises(NestorTransportError, match="ReadTimeout"):
        await client.health()


def public_methods(cls: type) -> Iterator[tuple[str, Any]]:
    return ((n, m) for n, m in vars(cls).items() if callable(m) and not n.startswith("_"))


def test_sync_and_async_signatures_match() -> None:
    sync = dict(public_methods(NestorClient))
    asyn = dict(public_methods(AsyncNestorClient))
    assert sync.keys() == asyn.keys()
    for name, method in sync.items():
        twin = asyn[name]
        assert inspect.iscoroutinefunction(twin), name
        assert list(inspect.signature(method).parameters) == list(inspect.signature(twin).parameters), name
        assert inspect.signature(method).return_annotation == inspect.signature(twin).return_annotation


def test_owned_http_client_is_closed() -> None:
    with NestorClient("http://127.0.0.1:1", timeout=1.0) as client:
        assert str(client._http.base_url).startswith("http://127.0.0.1:1")
    assert client._http.is_closed


def test_public_exports_are_sorted_and_resolve() -> None:
    assert nestor_client.__all__ == sorted(nestor_client.__all__)
    for name in nestor_client.__all__:
        assert getattr(nestor_client, name) is not None
