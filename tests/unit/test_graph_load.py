"""Loading a damaged or hostile saved graph raises ValueError naming the fault, never reads out of bounds.

A saved graph (index/backends/graph.py) is meta.json plus links0, levels, labels, deleted, upper and
codes as .npy, and int8/ for the quantizer. Each test damages one thing; the collection rebuilds from its
store when loading raises, so a clean ValueError is all that is needed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index import _graph
from index.backends.base import IndexParams, Space
from index.backends.graph import GraphIndex

M = 8  # small m: many nodes above level 0 (one in m), so upper links are exercised
N = 400
DIM = 16


def _x() -> np.ndarray:
    return np.random.default_rng(4).standard_normal((N, DIM)).astype(np.float32)


@pytest.fixture(params=["int8", "float32"])
def saved(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    x = _x()
    idx = GraphIndex(DIM, Space.l2, request.param, m=M, ef_construction=32, threads=1)
    idx.train(x)
    idx.add(x, np.arange(N, dtype=np.int64) * 2)
    idx.remove(np.arange(0, 40, 2, dtype=np.int64))
    idx.save(tmp_path / "g")
    return tmp_path / "g"


def _edit(directory: Path, name: str, change: Callable[[np.ndarray], np.ndarray | None]) -> None:
    arr = np.load(directory / f"{name}.npy")
    out = change(arr)
    np.save(directory / f"{name}.npy", arr if out is None else out)


def _edit_meta(directory: Path, **changes: Any) -> None:
    meta = json.loads((directory / "meta.json").read_text())
    meta.update(changes)
    (directory / "meta.json").write_text(json.dumps(meta))


def _meta(directory: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((directory / "meta.json").read_text())
    return meta


def _upper_node(directory: Path) -> tuple[int, int]:
    """A node above level 0 with a level-1 link, and the offset of its level-1 list in upper.npy."""
    levels = np.load(directory / "levels.npy").astype(np.int64)
    upper = np.load(directory / "upper.npy")
    starts = np.concatenate([[0], np.cumsum(levels * (M + 1))])
    for node in np.flatnonzero(levels > 0):
        if upper[starts[node]] > 0:
            return int(node), int(starts[node])
    raise AssertionError("no upper links")


def _load_fails(directory: Path, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GraphIndex.load(directory)


def test_the_undamaged_graph_loads(saved: Path) -> None:
    back = GraphIndex.load(saved)
    assert back.count == N - 20
    hits = back.search(_x()[100:105], 3, IndexParams(ef=32))
    assert (hits.labels[:, 0] == np.arange(100, 105) * 2).all()


# -- unreadable or cut files -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["links0", "upper", "codes", "labels"])
def test_a_truncated_file(saved: Path, name: str) -> None:
    path = saved / f"{name}.npy"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    _load_fails(saved, f"{name}.npy: cannot read")


def test_a_missing_file(saved: Path) -> None:
    (saved / "levels.npy").unlink()
    _load_fails(saved, "levels.npy: cannot read")


def test_an_object_array_is_not_unpickled(saved: Path) -> None:
    np.save(saved / "labels.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    _load_fails(saved, "labels.npy: cannot read")


# -- arrays of the wrong length or shape -----------------------------------------------------------


@pytest.mark.parametrize("name", ["links0", "levels", "deleted", "codes"])
def test_an_array_one_row_short(saved: Path, name: str) -> None:
    _edit(saved, name, lambda a: a[:-1])
    _load_fails(saved, f"{name} has shape")


def test_upper_links_cut_short_or_too_long(saved: Path) -> None:
    _edit(saved, "upper", lambda a: a[:-1])
    _load_fails(saved, "upper has")
    _edit(saved, "upper", lambda a: np.concatenate([a, np.zeros(M + 2, np.int32)]))
    _load_fails(saved, "upper has")


def test_an_array_with_the_wrong_number_of_dimensions(saved: Path) -> None:
    _edit(saved, "links0", lambda a: a.ravel())
    _load_fails(saved, "links0 must have 2 dimensions")


# -- wrong dtypes: a cast would hide the damage (-1 as uint8 is 255) -------------------------------


@pytest.mark.parametrize(
    ("name", "dtype", "match"),
    [
        ("links0", np.int64, "links0 must be int32, not int64"),
        ("links0", np.dtype(">i4"), "links0 must be int32, not >i4"),
        ("levels", np.int8, "levels must be uint8, not int8"),
        ("labels", np.float64, "labels must be int64, not float64"),
        ("deleted", np.bool_, "deleted must be uint8, not bool"),
        ("upper", np.int16, "upper must be int32, not int16"),
    ],
)
def test_an_array_of_the_wrong_dtype(saved: Path, name: str, dtype: Any, match: str) -> None:
    _edit(saved, name, lambda a: a.astype(dtype))
    _load_fails(saved, match)


def test_codes_of_the_other_codec(saved: Path) -> None:
    codec = _meta(saved)["codec"]
    _edit(saved, "codes", lambda a: a.astype(np.float32 if codec == "int8" else np.int8))
    _load_fails(saved, "codes must be " + ("int8" if codec == "int8" else "float32"))


# -- link lists -------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [-1, 2 * M + 1, 2**31 - 1])
def test_a_level_0_link_count_out_of_range(saved: Path, count: int) -> None:
    _edit(saved, "links0", lambda a: a.__setitem__((5, 0), count))
    _load_fails(saved, f"node 5 at level 0 has a link count of {count}, not 0 to {2 * M}")


@pytest.mark.parametrize("target", [-1, N, 2**31 - 1])
def test_a_level_0_neighbour_out_of_range(saved: Path, target: int) -> None:
    _edit(saved, "links0", lambda a: a.__setitem__((9, 1), target))
    _load_fails(saved, f"node 9 at level 0 links to {target}, not a node")


def test_a_node_linked_to_itself(saved: Path) -> None:
    _edit(saved, "links0", lambda a: a.__setitem__((12, 1), 12))
    _load_fails(saved, "node 12 at level 0 links to itself")


def test_an_upper_link_count_out_of_range(saved: Path) -> None:
    node, start = _upper_node(saved)
    _edit(saved, "upper", lambda a: a.__setitem__(start, M + 1))
    _load_fails(saved, f"node {node} at level 1 has a link count of {M + 1}, not 0 to {M}")


def test_an_upper_neighbour_out_of_range(saved: Path) -> None:
    node, start = _upper_node(saved)
    _edit(saved, "upper", lambda a: a.__setitem__(start + 1, N + 3))
    _load_fails(saved, f"node {node} at level 1 links to {N + 3}, not a node")


def test_an_upper_link_to_a_node_below_that_level(saved: Path) -> None:
    # searching level 1 from there would read that node's (absent) level-1 list
    node, start = _upper_node(saved)
    low = int(np.flatnonzero(np.load(saved / "levels.npy") == 0)[0])
    _edit(saved, "upper", lambda a: a.__setitem__(start + 1, low))
    _load_fails(saved, f"node {node} at level 1 links to node {low}, whose level is 0")


# -- levels and the entry point ----------------------------------------------------------------------


@pytest.mark.parametrize("level", [31, 255])
def test_a_level_above_the_cap(saved: Path, level: int) -> None:
    _edit(saved, "levels", lambda a: a.__setitem__(3, level))
    _load_fails(saved, f"levels\\[3\\] is {level}, above 30")


def test_a_level_that_disagrees_with_upper(saved: Path) -> None:
    _edit(saved, "levels", lambda a: a.__setitem__(int(np.argmin(a)), 1))  # one more level, no links for it
    _load_fails(saved, "upper has")


@pytest.mark.parametrize("entry", [N, 10**6])
def test_an_entry_point_outside_the_graph(saved: Path, entry: int) -> None:
    _edit_meta(saved, entry=entry)
    _load_fails(saved, f"entry point {entry} is not a node")


def test_no_entry_point_in_a_full_graph(saved: Path) -> None:
    _edit_meta(saved, entry=-1)
    _load_fails(saved, "entry point -1 is not a node")


def test_an_entry_point_below_the_top_level(saved: Path) -> None:
    low = int(np.flatnonzero(np.load(saved / "levels.npy") == 0)[0])
    _edit_meta(saved, entry=low)
    _load_fails(saved, "max_level .* is not the entry point's level")


def test_a_max_level_other_than_the_entry_points_level(saved: Path) -> None:
    _edit_meta(saved, max_level=_meta(saved)["max_level"] + 1)
    _load_fails(saved, "max_level .* is not the entry point's level")


def test_an_empty_graph_round_trips_and_must_have_no_entry_point(tmp_path: Path) -> None:
    idx = GraphIndex(DIM, Space.ip, "float32", m=M)
    idx.save(tmp_path / "g")
    assert GraphIndex.load(tmp_path / "g").count == 0
    _edit_meta(tmp_path / "g", entry=0, max_level=0)
    _load_fails(tmp_path / "g", "an empty graph has entry point -1")


# -- other contents ------------------------------------------------------------------------------------


def test_labels_out_of_order(saved: Path) -> None:
    _edit(saved, "labels", lambda a: a.__setitem__(7, a[6]))
    _load_fails(saved, "labels must increase")


def test_a_deleted_flag_other_than_0_or_1(saved: Path) -> None:
    _edit(saved, "deleted", lambda a: a.__setitem__(2, 7))
    _load_fails(saved, "deleted\\[2\\] is 7")


def test_non_finite_float_codes(tmp_path: Path) -> None:
    idx = GraphIndex(DIM, Space.ip, "float32", m=M)
    idx.add(_x(), np.arange(N, dtype=np.int64))
    idx.save(tmp_path / "g")
    _edit(tmp_path / "g", "codes", lambda a: a.__setitem__((4, 2), np.nan))
    _load_fails(tmp_path / "g", "codes row 4 holds a non-finite value")


@pytest.mark.parametrize("saved", ["int8"], indirect=True)
def test_a_damaged_int8_quantizer(saved: Path) -> None:
    delta = np.load(saved / "int8" / "delta.npy")
    np.save(saved / "int8" / "delta.npy", delta[:-1])
    _load_fails(saved, "int8")
    delta[0] = np.inf
    np.save(saved / "int8" / "delta.npy", delta)
    _load_fails(saved, "offset/delta must be finite")


# -- meta.json that does not match the arrays, or is not valid ---------------------------------------


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"m": 2 * M}, "links0 has shape"),  # arrays of another m
        ({"m": 129}, "m must be an integer in \\[2, 128\\]"),
        ({"m": "8"}, "m must be an integer"),
        ({"m": 8.0}, "m must be an integer"),
        ({"dim": True}, "dim must be an integer"),
        ({"dim": 0}, "dim must be an integer in \\[1, 65536\\]"),
        ({"dim": 2**31}, "dim must be an integer in"),
        ({"ef": 2**40}, "ef must be an integer in"),
        ({"entry": -2}, "entry must be an integer in \\[-1, "),
        ({"entry": None}, "entry must be an integer"),
        ({"seed": -1}, "seed must be an integer in"),
        ({"space": "cosine"}, "space must be one of"),
        ({"codec": "int4"}, "codec must be"),
        ({"kind": "hnsw"}, "not a graph index"),
    ],
)
def test_meta_json_that_does_not_fit(saved: Path, changes: dict[str, Any], match: str) -> None:
    _edit_meta(saved, **changes)
    _load_fails(saved, match)


def test_meta_json_of_another_dimension(saved: Path) -> None:
    _edit_meta(saved, dim=DIM + 1)
    _load_fails(saved, "offset/delta must have dim entries" if _meta(saved)["codec"] == "int8" else "codes has shape")


def test_meta_json_of_the_other_codec(saved: Path) -> None:
    if _meta(saved)["codec"] == "int8":
        _edit_meta(saved, codec="float32")
        _load_fails(saved, "codes must be float32, not int8")
    else:
        _edit_meta(saved, codec="int8")
        _load_fails(saved, "cannot load the int8 quantizer: FileNotFoundError")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\udcff"])
def test_meta_json_that_is_not_an_object(saved: Path, text: str) -> None:
    (saved / "meta.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    _load_fails(saved, "meta.json: cannot read|not a graph index")


def test_a_missing_meta_key(saved: Path) -> None:
    meta = _meta(saved)
    del meta["max_level"]
    (saved / "meta.json").write_text(json.dumps(meta))
    _load_fails(saved, "max_level must be an integer")


# -- the native loader on its own ----------------------------------------------------------------------


def _native_state() -> tuple[_graph.Graph, dict[str, Any]]:
    g = _graph.Graph(DIM, "l2", "float32", M, 32)
    g.add(_x(), None, np.arange(N, dtype=np.int64), 1)
    return g, g.get_state()


def test_a_rejected_state_leaves_the_graph_as_it_was() -> None:
    g, state = _native_state()
    before = g.search(_x()[:10], 5, 32)
    bad = dict(state, upper=state["upper"][:-1])
    with pytest.raises(ValueError, match="upper has"):
        g.set_state(bad)
    with pytest.raises(ValueError, match="the graph state has no 'codes'"):
        g.set_state({k: v for k, v in state.items() if k != "codes"})
    with pytest.raises(ValueError, match="entry must be an integer"):
        g.set_state(dict(state, entry=1.0))
    with pytest.raises(ValueError, match="links0 must be an array"):
        g.set_state(dict(state, links0=state["links0"].tolist()))
    assert g.size == N
    after = g.search(_x()[:10], 5, 32)
    np.testing.assert_array_equal(before[0], after[0])


def test_random_damage_to_the_links_raises_or_loads_a_searchable_graph() -> None:
    """Fuzz: random ints (mostly near the valid range) written over link lists; a state that passes the
    checks must be safe to search and to extend."""
    _, state = _native_state()
    rng = np.random.default_rng(11)
    x = _x()
    loaded = 0
    for _ in range(150):
        st = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
        name = "links0" if rng.random() < 0.7 or len(st["upper"]) == 0 else "upper"
        flat = st[name].reshape(-1)
        for _ in range(rng.integers(1, 4)):
            flat[rng.integers(len(flat))] = rng.choice([rng.integers(-3, N + 3), rng.integers(-(2**31), 2**31 - 1)])
        g = _graph.Graph(DIM, "l2", "float32", M, 32)
        try:
            g.set_state(st)
        except ValueError:
            continue
        loaded += 1
        labels, _ = g.search(x[:4], 5, 32)
        assert ((labels >= -1) & (labels < N)).all()
        g.add((x[:2] + 0.01).astype(np.float32), None, np.array([N, N + 1], dtype=np.int64), 1)
    assert loaded > 0  # some damage is harmless (unused slots, in-range targets)
