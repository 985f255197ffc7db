"""The metadata filters of the framework integrations, translated without a server; and `nestor_client`
importing no framework."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from nestor_client.integrations._filters import metadata_filter
from nestor_client.models import Filter


def test_equalities_become_must_conditions_under_the_metadata_key() -> None:
    got = metadata_filter({"genre": "sf", "year": 1965, "lent": True, "gone": None, "rating": 8.5}, "metadata")
    assert got == {
        "must": [
            {"key": "metadata.genre", "match": {"value": "sf"}},
            {"key": "metadata.year", "match": {"value": 1965}},
            {"key": "metadata.lent", "match": {"value": True}},
            {"is_null": {"key": "metadata.gone"}},
            {"key": "metadata.rating", "range": {"gte": 8.5, "lte": 8.5}},
        ]
    }


def test_lists_operators_and_objects() -> None:
    got = metadata_filter(
        {
            "tags": ["a", 2],
            "score": [0.5, True],
            "year": {"$gt": 1, "$lte": 9},
            "who": {"$ne": "x", "$nin": ["y"]},
            "a": {"b": {"c": "d"}},
        },
        "m",
    )
    assert got == {
        "must": [
            {"key": "m.tags", "match": {"any": ["a", 2]}},
            {
                "should": [
                    {"key": "m.score", "range": {"gte": 0.5, "lte": 0.5}},
                    {"key": "m.score", "match": {"value": True}},
                ]
            },
            {"key": "m.year", "range": {"gt": 1}},
            {"key": "m.year", "range": {"lte": 9}},
            {"must_not": [{"key": "m.who", "match": {"value": "x"}}]},
            {"must_not": [{"key": "m.who", "match": {"any": ["y"]}}]},
            {"key": "m.a.b.c", "match": {"value": "d"}},
        ]
    }


def test_nestor_filters_pass_through() -> None:
    native = {"should": [{"key": "metadata.x", "match": {"value": 1}}], "must_not": []}
    assert metadata_filter(native, "metadata") == native
    model = Filter(must=[])
    assert metadata_filter(model, "metadata") is model
    assert metadata_filter(None, "metadata") is None
    assert metadata_filter({}, "metadata") is None


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ({"x": {"$between": [1, 2]}}, "unknown filter operator"),
        ({"x": []}, "empty list"),
        ({"x": {}}, "empty condition"),
        ({"x": {"$in": "abc"}}, "takes a list"),
        ({"x": {"$gt": True}}, "takes a number"),
        ({"x": {"$gt": None}}, "takes a number"),
        ({"x": b"raw"}, "cannot compare"),
        ({"": 1}, "non-empty string"),
        (["x"], "must be a dict"),
    ],
)
def test_unmappable_filters_are_refused(flt: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metadata_filter(flt, "metadata")


def test_the_client_imports_no_framework() -> None:
    code = (
        "import sys, nestor_client, nestor_client.integrations, nestor_client.integrations._filters; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('langchain_core', 'langchain')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
