"""Each filter condition of qdrant-client's models, checked against a Python oracle over known payloads,
first answered without payload indexes (SQL) and then with them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

pytestmark = pytest.mark.e2e

N = 40
CITIES = ["berlin", "paris", "rome"]
WORDS = ["quick", "lazy", "brown", "red"]


def _payload(i: int) -> dict[str, Any]:
    p: dict[str, Any] = {
        "city": CITIES[i % 3],
        "n": i,
        "price": i * 1.5,
        "flag": i % 4 == 0,
        "tags": ["x", "y", "z"][: i % 4],
        "desc": f"the {WORDS[i % 4]} fox number {i}",
        "when": f"2024-01-{i % 28 + 1:02d}T12:00:00Z",
        "items": [{"k": "a" if j % 2 == 0 else "b", "v": (i + j) % 5} for j in range(i % 3)],
    }
    if i % 5 == 1:
        p["maybe"] = None
    elif i % 5 == 2:
        p["maybe"] = "set"
    return p


PAYLOADS = {i: _payload(i) for i in range(N)}
FC = m.FieldCondition


def _day(p: dict[str, Any]) -> int:
    return datetime.fromisoformat(p["when"]).day


# (name, qdrant-client filter, oracle over a payload and its id)
CASES: list[tuple[str, m.Filter, Callable[[int, dict[str, Any]], bool]]] = [
    (
        "match value",
        m.Filter(must=[FC(key="city", match=m.MatchValue(value="paris"))]),
        lambda i, p: p["city"] == "paris",
    ),
    ("match bool", m.Filter(must=[FC(key="flag", match=m.MatchValue(value=True))]), lambda i, p: p["flag"]),
    ("match int", m.Filter(must=[FC(key="n", match=m.MatchValue(value=7))]), lambda i, p: p["n"] == 7),
    (
        "match any",
        m.Filter(must=[FC(key="city", match=m.MatchAny(any=["paris", "rome"]))]),
        lambda i, p: p["city"] in ("paris", "rome"),
    ),
    (
        "match except",
        m.Filter(must=[FC(key="city", match=m.MatchExcept(**{"except": ["paris"]}))]),
        lambda i, p: p["city"] != "paris",
    ),
    ("match in array", m.Filter(must=[FC(key="tags", match=m.MatchValue(value="y"))]), lambda i, p: "y" in p["tags"]),
    ("range int", m.Filter(must=[FC(key="n", range=m.Range(gte=10, lt=20))]), lambda i, p: 10 <= p["n"] < 20),
    ("range float", m.Filter(must=[FC(key="price", range=m.Range(gt=30.0))]), lambda i, p: p["price"] > 30.0),
    (
        "datetime range",
        m.Filter(
            must=[
                FC(
                    key="when",
                    range=m.DatetimeRange(gte=datetime(2024, 1, 10, tzinfo=UTC), lt=datetime(2024, 1, 20, tzinfo=UTC)),
                )
            ]
        ),
        lambda i, p: 10 <= _day(p) < 20,
    ),
    ("is_empty", m.Filter(must=[m.IsEmptyCondition(is_empty=m.PayloadField(key="tags"))]), lambda i, p: not p["tags"]),
    (
        "is_null",
        m.Filter(must=[m.IsNullCondition(is_null=m.PayloadField(key="maybe"))]),
        lambda i, p: "maybe" in p and p["maybe"] is None,
    ),
    ("has_id", m.Filter(must=[m.HasIdCondition(has_id=[1, 5, 7, 999])]), lambda i, p: i in (1, 5, 7)),
    (
        "nested",
        m.Filter(
            must=[
                m.NestedCondition(
                    nested=m.Nested(
                        key="items",
                        filter=m.Filter(
                            must=[FC(key="k", match=m.MatchValue(value="a")), FC(key="v", range=m.Range(gte=2))]
                        ),
                    )
                )
            ]
        ),
        lambda i, p: any(o["k"] == "a" and o["v"] >= 2 for o in p["items"]),
    ),
    (
        "values_count",
        m.Filter(must=[FC(key="tags", values_count=m.ValuesCount(gte=2))]),
        lambda i, p: len(p["tags"]) >= 2,
    ),
    (
        "should",
        m.Filter(should=[FC(key="city", match=m.MatchValue(value="rome")), FC(key="n", range=m.Range(lt=5))]),
        lambda i, p: p["city"] == "rome" or p["n"] < 5,
    ),
    (
        "must_not",
        m.Filter(must_not=[FC(key="city", match=m.MatchValue(value="berlin"))]),
        lambda i, p: p["city"] != "berlin",
    ),
    (
        "single condition, not a list",
        m.Filter(must=FC(key="city", match=m.MatchValue(value="rome"))),
        lambda i, p: p["city"] == "rome",
    ),
    (
        "min_should",
        m.Filter(
            min_should=m.MinShould(
                conditions=[
                    FC(key="city", match=m.MatchValue(value="paris")),
                    FC(key="n", range=m.Range(gte=20)),
                    FC(key="tags", match=m.MatchValue(value="x")),
                ],
                min_count=2,
            )
        ),
        lambda i, p: sum([p["city"] == "paris", p["n"] >= 20, "x" in p["tags"]]) >= 2,
    ),
    (
        "nested clauses",
        m.Filter(
            must=[m.Filter(should=[FC(key="flag", match=m.MatchValue(value=True)), m.HasIdCondition(has_id=[3])])],
            must_not=[FC(key="n", range=m.Range(gt=30))],
        ),
        lambda i, p: (p["flag"] or i == 3) and not p["n"] > 30,
    ),
    (
        "is_empty flag of a field condition",
        m.Filter(must=[FC(key="tags", is_empty=False)]),
        lambda i, p: bool(p["tags"]),
    ),
]


# Nestor answers full-text matches from a text payload index only (Qdrant falls back to a substring scan).
TEXT_CASE = (
    "match text",
    m.Filter(must=[FC(key="desc", match=m.MatchText(text="quick"))]),
    lambda i, p: "quick" in p["desc"],
)


@pytest.fixture(scope="module")
def coll(client: QdrantClient) -> str:
    client.create_collection("f", vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    client.upsert("f", [m.PointStruct(id=i, vector=[1.0, float(i)], payload=p) for i, p in PAYLOADS.items()])
    return "f"


def _check_all(client: QdrantClient, coll: str, cases: list[Any]) -> None:
    for name, flt, oracle in cases:
        expect = sorted(i for i, p in PAYLOADS.items() if oracle(i, p))
        assert 0 < len(expect) < N, f"{name}: the case must split the points"
        records, _ = client.scroll(coll, scroll_filter=flt, limit=N, with_payload=False)
        assert [r.id for r in records] == expect, name
        assert client.count(coll, count_filter=flt).count == len(expect), name
        hits = client.query_points(coll, query=[0.0, 1.0], query_filter=flt, limit=N).points
        assert sorted(int(h.id) for h in hits) == expect, name


def test_every_condition_unindexed(client: QdrantClient, coll: str) -> None:
    _check_all(client, coll, CASES)
    with pytest.raises(UnexpectedResponse) as exc:
        client.count(coll, count_filter=TEXT_CASE[1])
    assert exc.value.status_code == 400
    assert "text payload index" in exc.value.structured()["status"]["error"]


def test_every_condition_with_payload_indexes(client: QdrantClient, coll: str) -> None:
    for field, schema in [
        ("city", m.PayloadSchemaType.KEYWORD),
        ("tags", m.PayloadSchemaType.KEYWORD),
        ("n", m.PayloadSchemaType.INTEGER),
        ("price", m.PayloadSchemaType.FLOAT),
        ("flag", m.PayloadSchemaType.BOOL),
        ("when", m.PayloadSchemaType.DATETIME),
        ("desc", m.TextIndexParams(type=m.TextIndexType.TEXT, tokenizer=m.TokenizerType.WORD, lowercase=True)),
    ]:
        client.create_payload_index(coll, field, schema)
    assert len(client.get_collection(coll).payload_schema) == 7
    _check_all(client, coll, [*CASES, TEXT_CASE])


@pytest.mark.parametrize(
    ("flt", "needle"),
    [
        (m.Filter(must=[FC(key="loc", geo_radius=m.GeoRadius(center=m.GeoPoint(lon=0, lat=0), radius=1.0))]), "geo"),
        (m.Filter(must=[m.HasVectorCondition(has_vector="v")]), "has_vector"),
        (m.Filter(must=[FC(key="desc", match=m.MatchPhrase(phrase="quick fox"))]), "phrase"),
    ],
)
def test_conditions_nestor_cannot_evaluate_are_refused(
    client: QdrantClient, coll: str, flt: m.Filter, needle: str
) -> None:
    with pytest.raises(UnexpectedResponse) as exc:
        client.count(coll, count_filter=flt)
    assert exc.value.status_code == 400
    assert needle in exc.value.structured()["status"]["error"]
