"""The translation modules on their own (no server): ids, filter rewrites, configs."""

from __future__ import annotations

import itertools
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index.filters import matches
from server.qdrant.config import to_config
from server.qdrant.filters import MAX_SUBSETS, to_filter
from server.qdrant.ids import point_id
from server.qdrant.models import CreateCollection
from server.qdrant.wire import QdrantError
from server.settings import Settings

SETTINGS = Settings()


def test_uuid_spellings_name_one_point() -> None:
    u = uuid.uuid4()
    for spelling in (str(u), str(u).upper(), u.hex, "{" + str(u) + "}", u.urn):
        assert point_id(spelling) == str(u)
    assert point_id(0) == 0 and point_id(2**63 - 1) == 2**63 - 1


@pytest.mark.parametrize("bad", [-1, 2**64, True, "not-a-uuid", "", 1.5, None])
def test_bad_ids_are_400(bad: object) -> None:
    with pytest.raises(QdrantError) as exc:
        point_id(bad)
    assert exc.value.status == 400


CONDS = [{"key": f"k{j}", "match": {"value": True}} for j in range(4)]


@settings(max_examples=40, deadline=None)
@given(
    flags=st.lists(st.booleans(), min_size=4, max_size=4),
    n=st.integers(1, 4),
    k=st.integers(0, 5),
)
def test_min_should_counts_matching_conditions(flags: list[bool], n: int, k: int) -> None:
    payload = {f"k{j}": flags[j] for j in range(4)}
    flt = to_filter({"min_should": {"conditions": CONDS[:n], "min_count": k}}, SETTINGS)
    assert flt is not None
    assert matches(flt, 1, payload) == (sum(flags[:n]) >= k)


def test_min_should_over_too_many_subsets_is_refused() -> None:
    conds = [{"key": f"k{j}", "match": {"value": 1}} for j in range(10)]
    assert len(list(itertools.combinations(conds, 5))) > MAX_SUBSETS
    with pytest.raises(QdrantError, match="split the filter"):
        to_filter({"min_should": {"conditions": conds, "min_count": 5}}, SETTINGS)


def test_field_condition_flags_and_single_conditions() -> None:
    flt = to_filter({"must": {"key": "tags", "is_empty": False}}, SETTINGS)
    assert flt is not None
    assert matches(flt, 1, {"tags": ["a"]}) and not matches(flt, 1, {"tags": []}) and not matches(flt, 1, {})
    flt = to_filter({"must": [{"key": "v", "is_null": True}]}, SETTINGS)
    assert flt is not None and matches(flt, 1, {"v": None}) and not matches(flt, 1, {"v": 1})
    flt = to_filter({"must": [{"has_id": []}]}, SETTINGS)  # Qdrant: no id listed matches nothing
    assert flt is not None and not matches(flt, 1, {})


def test_config_mapping() -> None:
    body = CreateCollection.model_validate(
        {
            "vectors": {
                "a": {"size": 4, "distance": "Dot", "hnsw_config": {"m": 32}},
                "b": {"size": 2, "distance": "Euclid"},
            },
            "hnsw_config": {"m": 8, "ef_construct": 50},
            "quantization_config": {"scalar": {"type": "int8", "quantile": 0.99}},
        }
    )
    cfg = to_config(body).vector_fields()
    assert (cfg["a"].metric, cfg["a"].index.m, cfg["a"].index.ef_construction) == ("dot", 32, 50)  # type: ignore[union-attr]
    assert (cfg["b"].metric, cfg["b"].index.m) == ("l2", 8)  # type: ignore[union-attr]
    assert cfg["a"].quantize is not None and cfg["a"].quantize.type == "int8"
    mv = to_config(
        CreateCollection.model_validate(
            {"vectors": {"size": 8, "distance": "Cosine", "multivector_config": {"comparator": "max_sim"}}}
        )
    )
    assert mv.multivector is not None and mv.multivector.type == "muvera"
