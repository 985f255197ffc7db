"""The admin dashboard in a real headless Chromium against a real server process.

The page must show what the API says, update itself without a reload, move a running job's progress
bar, flag a collection whose live recall is low, cope with 0 and with 50 collections, work with auth
on and off, show named vectors and a collection whose indexer keeps failing, and log no console errors.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.auth import hash_key
from tests.browser.conftest import ARTIFACTS, InProcessServer, Page, until
from tests.e2e.serverproc import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DIM = 32


def _field(page: Any, row: str, field: str) -> str | None:
    el = page.query_selector(f'tr[data-name="{row}"] [data-field="{field}"]')
    return None if el is None else el.get_attribute("data-value")


def _upsert(http: Any, name: str, start: int, n: int, rng: np.random.Generator) -> None:
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    for i in range(0, n, 1000):
        chunk = range(start + i, start + min(n, i + 1000))
        points = [{"id": j, "vector": vecs[j - start].tolist(), "payload": {"j": j}} for j in chunk]
        http.put(f"/collections/{name}/points", json={"points": points}).raise_for_status()


def _ready(http: Any, name: str) -> bool:
    idx = http.get(f"/collections/{name}").json()["result"]["index"]
    return idx["state"] == "ready" and not idx.get("pending")


def _info(http: Any, name: str) -> dict[str, Any]:
    info: dict[str, Any] = http.get(f"/collections/{name}").json()["result"]
    return info


def _screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.page.screenshot(path=str(path), full_page=True)
    return path


def _fact(page: Page, key: str) -> str | None:
    """The value shown for `key` in the detail panel's facts."""
    js = "k => { const dt = [...document.querySelectorAll('dl.kv dt')].find(e => e.textContent === k); "
    js += "return dt ? dt.nextElementSibling.textContent : null; }"
    return page.evaluate(js, key)  # type: ignore[no-any-return]


def test_dashboard_matches_the_api_and_updates_itself(
    start_server: Callable[..., ServerProcess], new_page: Callable[..., Page], api: Callable[..., Any], tmp_path: Path
) -> None:
    srv = start_server()
    http = api(srv.url)
    p = new_page()
    page = p.page
    page.goto(srv.url + "/dashboard?refresh=500")

    # an empty server
    until(lambda: page.is_visible("#no-collections"), what="the empty state")
    assert page.get_attribute('[data-field="total-collections"]', "data-value") == "0"

    rng = np.random.default_rng(7)
    specs = {
        "articles": {"type": "hnsw", "m": 16, "ef_construction": 100},
        "products": {"type": "flat"},
        "drifted": {"type": "hnsw", "m": 4, "ef_construction": 8, "ef": 1},  # a beam this narrow misses
    }
    for name, index in specs.items():
        http.put(f"/collections/{name}", json={"dim": DIM, "metric": "cosine", "index": index}).raise_for_status()
        _upsert(http, name, 0, 3000 if name != "products" else 1500, rng)
    for name in specs:
        until(partial(_ready, http, name), timeout=120, what=f"{name} indexed")
    # live recall needs queries to replay
    for q in rng.standard_normal((40, DIM)):
        for name in specs:
            http.post(f"/collections/{name}/points/search", json={"vector": q.tolist(), "limit": 10}).raise_for_status()

    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    until(lambda: len(page.query_selector_all("tr[data-name]")) == 3, what="three rows")

    # The numbers shown are the API's (polled: memory may move while an index is saved).
    def matches(name: str) -> bool:
        info = _info(http, name)
        ram = sum(c["ram"] for c in info["memory"].values())
        disk = sum(c["disk"] for c in info["memory"].values())
        want = {
            "count": str(info["count"]),
            "dim": str(info["config"]["dim"]),
            "metric": info["config"]["metric"],
            "state": info["index"]["state"],
            "ram": str(ram),
            "disk": str(disk),
        }
        got = {k: _field(page, name, k) for k in want}
        return got == want

    for name in specs:
        until(partial(matches, name), what=f"{name}'s row to match the API")

    # memory per component, in the detail panel, for whatever components the engine reports
    page.click('tr[data-name="articles"]')
    until(lambda: page.text_content('[data-field="detail-name"]') == "articles", what="the detail panel")

    def components_match() -> bool:
        mem = _info(http, "articles")["memory"]
        shown = {
            el.get_attribute("data-component"): (
                el.query_selector('[data-field="mem-ram"]').get_attribute("data-value"),
                el.query_selector('[data-field="mem-disk"]').get_attribute("data-value"),
            )
            for el in page.query_selector_all("tr[data-component]")
        }
        return shown == {k: (str(v["ram"]), str(v["disk"])) for k, v in mem.items()}

    until(components_match, what="memory components to match the API")

    # dead bytes and compactions, in the facts (docs/compaction.md)
    http.post("/collections/articles/points/delete", json={"ids": list(range(300))}).raise_for_status()
    until(lambda: (_fact(page, "dead") or "").endswith(" 300 dead labels"), what="the dead labels")
    http.post("/collections/articles/optimize", params={"wait": "true"}).raise_for_status()
    until(lambda: (_fact(page, "compaction") or "").startswith("idle; last "), what="the last compaction")
    until(lambda: (_fact(page, "dead") or "").endswith(" 0 dead labels"), what="no dead labels")
    assert page.query_selector('[data-chart="search-latency"] polyline, [data-chart="search-latency"] circle')

    # live recall: about 1 on the flat index, clearly lower and flagged on the starved HNSW
    until(lambda: _field(page, "products", "recall") not in (None, ""), what="a recall for products")
    until(lambda: page.query_selector('[data-warning="drifted"]') is not None, what="a recall warning for drifted")
    assert float(_field(page, "products", "recall") or 0) >= 0.99
    drifted = _info(http, "drifted")["stats"]["recall"]
    assert drifted["latest"] < 0.9 and drifted["warning"]
    assert page.query_selector('[data-warning="products"]') is None
    assert float(_field(page, "articles", "qps") or 0) > 0

    # more upserts show up without a reload
    _upsert(http, "products", 1500, 500, rng)
    until(lambda: _field(page, "products", "count") == "2000", what="the new count")
    until(lambda: float(_field(page, "products", "ups") or 0) > 0, what="an upsert rate")
    assert page.evaluate("window.__sameDocument") is True

    # a running ingest job's progress bar moves
    http.put("/collections/bulk", json={"dim": 4, "index": {"type": "flat"}}).raise_for_status()
    src = tmp_path / "bulk.npy"
    np.save(src, np.random.default_rng(1).standard_normal((400_000, 4)).astype(np.float32))
    request = {"collection": "bulk", "source": {"path": str(src)}, "batch_size": 25}
    job = http.post("/jobs/ingest", json=request).json()["result"]
    bar = f'tr[data-job="{job["id"]}"] [data-field="progress"]'

    def progress() -> float:
        value = page.get_attribute(bar, "data-value") if page.query_selector(bar) else None
        return float(value or 0)

    first = until(lambda: progress() > 0 and progress(), what="the job to make progress")
    until(lambda: progress() > first, what="the progress bar to move")
    width = page.eval_on_selector(bar + " .fill", "el => parseFloat(el.style.width)")
    assert width > 0
    assert page.get_attribute(f'tr[data-job="{job["id"]}"] [data-field="state"]', "data-value") == "running"
    _screenshot(p, "dashboard.png")
    http.post(f"/jobs/{job['id']}/cancel").raise_for_status()

    # snapshots (this server has them, so the detail must offer the button): it creates one, the list shows it
    page.click('tr[data-name="products"]')
    until(lambda: page.text_content('[data-field="detail-name"]') == "products", what="products selected")
    until(lambda: page.query_selector("#create-snapshot") is not None, what="the create-snapshot button")
    page.click("#create-snapshot")
    until(lambda: page.query_selector("tr[data-snapshot]") is not None, what="the snapshot to be listed")
    listed = http.get("/collections/products/snapshots").json()["result"]["snapshots"]
    assert page.get_attribute("tr[data-snapshot]", "data-snapshot") in {s["name"] for s in listed}

    assert p.errors == []


def test_fifty_collections(
    start_server: Callable[..., ServerProcess], new_page: Callable[..., Page], api: Callable[..., Any]
) -> None:
    srv = start_server()
    http = api(srv.url)
    vecs = np.random.default_rng(3).standard_normal((20, 8)).tolist()
    for i in range(50):
        name = f"tenant-{i:02d}"
        http.put(f"/collections/{name}", json={"dim": 8, "index": {"type": "flat"}}).raise_for_status()
        points = [{"id": j, "vector": vecs[j]} for j in range(i % 20 + 1)]
        http.put(f"/collections/{name}/points", json={"points": points}).raise_for_status()
    p = new_page(1366, 768)  # a small laptop screen
    page = p.page
    page.goto(srv.url + "/dashboard?refresh=1000")
    until(lambda: len(page.query_selector_all("tr[data-name]")) == 50, what="fifty rows")
    assert page.get_attribute('[data-field="total-points"]', "data-value") == str(sum(i % 20 + 1 for i in range(50)))
    refreshes = int(page.evaluate("document.body.dataset.refreshes"))
    until(lambda: int(page.evaluate("document.body.dataset.refreshes")) >= refreshes + 2, what="two more refreshes")
    page.fill("#filter", "tenant-4")
    assert len(page.query_selector_all("tr[data-name]")) == 10
    assert _field(page, "tenant-42", "count") == "3"
    _screenshot(p, "dashboard-50.png")
    assert p.errors == []


def test_api_keys(
    start_server: Callable[..., ServerProcess], new_page: Callable[..., Page], api: Callable[..., Any]
) -> None:
    admin, reader = "nst_admin_" + "a" * 24, "nst_reader_" + "b" * 24
    keys = f"admin:{hash_key(admin)},read:{hash_key(reader)}"
    srv = start_server({"NESTOR_API_KEYS": keys})
    http = api(srv.url, {"api-key": admin})
    http.put("/collections/secret", json={"dim": 4, "index": {"type": "flat"}}).raise_for_status()
    http.put("/collections/secret/points", json={"points": [{"id": 1, "vector": [1, 0, 0, 0]}]}).raise_for_status()

    p = new_page()
    page = p.page
    page.goto(srv.url + "/dashboard?refresh=500")
    until(lambda: page.is_visible("#banner") and "API key" in (page.text_content("#banner") or ""), what="a key prompt")
    assert page.query_selector("tr[data-name]") is None

    # a read key sees the collections; jobs and snapshots say what role they need
    page.fill("#api-key", reader)
    page.click('#key-form button[type="submit"]')
    until(lambda: _field(page, "secret", "count") == "1", what="the collection with a read key")
    assert page.evaluate("localStorage.getItem('nestor.apiKey')") == reader
    until(lambda: "role" in (page.text_content("#jobs-error") or ""), what="the jobs role message")
    if page.query_selector("#create-snapshot") is not None:
        until(lambda: page.query_selector('[data-field="snapshots-error"]') is not None, what="snapshots refused")
        page.click("#create-snapshot")
        until(lambda: "admin" in (page.text_content('[data-field="snapshot-note"]') or ""), what="an admin note")

    # the key survives a reload (localStorage), and an admin key sees everything
    page.fill("#api-key", admin)
    page.click('#key-form button[type="submit"]')
    page.reload()
    until(lambda: _field(page, "secret", "count") == "1", what="the collection after a reload")
    until(lambda: page.query_selector("#no-jobs") is not None and page.is_visible("#no-jobs"), what="the jobs list")
    assert page.is_hidden("#banner")
    # Only the refused calls of the first minute may have logged errors (the browser logs every 401/403).
    assert all("401" in e or "403" in e for e in p.errors), p.errors


def test_named_vectors_and_a_failing_indexer(
    start_app: Callable[..., InProcessServer],
    new_page: Callable[..., Page],
    api: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def cannot_train(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault: the int8 codes cannot be trained on this sample")

    # Every compressed index of this server fails to train, so its indexer keeps failing.
    monkeypatch.setattr("index.indexer.train_encoded", cannot_train)
    srv = start_app()
    http = api(srv.url)
    rng = np.random.default_rng(11)

    vectors = {
        "text": {"dim": 32, "metric": "cosine", "index": {"type": "hnsw", "m": 8}},
        "image": {"dim": 16, "metric": "l2", "index": {"type": "flat"}, "quality": {"recall_target": 0.99}},
        "tokens": {
            "dim": 8,
            "metric": "dot",
            "multivector": {"type": "muvera", "k_sim": 2, "d_proj": 4, "r_reps": 4},
            "index": {"type": "hnsw"},  # not the default IVF-PQ, which trains only at 256 documents
        },
    }
    http.put("/collections/multi", json={"vectors": vectors}).raise_for_status()
    points = []
    for i in range(400):
        vec: dict[str, Any] = {"text": rng.standard_normal(32).tolist()}
        if i % 2:  # every other point has no image
            vec["image"] = rng.standard_normal(16).tolist()
        if i % 3 == 0:
            vec["tokens"] = rng.standard_normal((3, 8)).tolist()
        points.append({"id": i, "vector": vec})
    http.put("/collections/multi/points", json={"points": points}).raise_for_status()

    http.put("/collections/plain", json={"dim": 16, "index": {"type": "hnsw"}}).raise_for_status()
    plain = [{"id": i, "vector": rng.standard_normal(16).tolist()} for i in range(300)]
    http.put("/collections/plain/points", json={"points": plain}).raise_for_status()

    config = {"dim": 16, "quantize": {"type": "int8"}, "training": {"threshold": 64}}
    http.put("/collections/broken", json=config).raise_for_status()
    pts = [{"id": i, "vector": rng.standard_normal(16).tolist()} for i in range(200)]
    http.put("/collections/broken/points", json={"points": pts}).raise_for_status()
    until(lambda: _info(http, "broken")["status"] == "red", what="the broken collection to report red")
    broken = _info(http, "broken")
    assert broken["index"]["state"] == "failing" and "injected fault" in broken["index"]["error"]

    p = new_page()
    page = p.page
    page.goto(srv.url + "/dashboard?refresh=500&collection=multi")
    until(lambda: len(page.query_selector_all("tr[data-name]")) == 3, what="three rows")

    # named vectors: the row counts them and lists each one's dimension and index
    assert _field(page, "multi", "dim") == "3 vectors"
    assert _field(page, "multi", "metric") == "mixed"
    index_cell = _field(page, "multi", "index") or ""
    for brief in ("image 16 flat", "text 32 hnsw", "tokens 8 muvera→hnsw"):
        assert brief in index_cell
    lines = page.query_selector_all('tr[data-name="multi"] [data-field="index"] [data-vector]')
    assert sorted(el.get_attribute("data-vector") for el in lines) == ["image", "text", "tokens"]
    assert _field(page, "plain", "dim") == "16"  # the unnamed form is unchanged

    # ... and the detail panel has one row per vector, with the state and backend the API reports
    until(lambda: page.text_content('[data-field="detail-name"]') == "multi", what="multi's detail panel")

    def vectors_match() -> bool:
        info = _info(http, "multi")["vectors"]
        shown = {
            el.get_attribute("data-vector"): (
                el.query_selector('[data-field="vector-state"]').get_attribute("data-value"),
                el.query_selector('[data-field="vector-backend"]').get_attribute("data-value"),
            )
            for el in page.query_selector_all("#detail tr[data-vector]")
        }
        return shown == {n: (v["index"]["state"], v["index"]["backend"]) for n, v in info.items()}

    until(vectors_match, what="the vectors table to match the API")
    assert "nestor-graph (float32" in (page.text_content('#detail tr[data-vector="text"]') or "")
    # the recall target's block: only the vector that has one, with the state the API reports
    until(lambda: page.query_selector('[data-quality="image"]') is not None, what="the recall target block")
    assert page.text_content('[data-quality="image"] [data-field="quality-state"]') == "exact"
    assert [el.get_attribute("data-quality") for el in page.query_selector_all("[data-quality]")] == ["image"]
    _screenshot(p, "dashboard-named-vectors.png")

    # the failing collection: a red pill, the error under it, a red warning, the whole error in the panel
    assert _field(page, "broken", "state") == "failing"
    pill = page.query_selector('tr[data-name="broken"] [data-field="state"] .pill')
    assert pill is not None and "bad" in (pill.get_attribute("class") or "")
    assert "injected fault" in (_field(page, "broken", "error") or "")
    assert page.is_visible('tr[data-name="broken"] [data-field="error"]')
    assert page.query_selector('[data-failing="broken"]') is not None
    assert page.query_selector('[data-failing="multi"]') is None and _field(page, "multi", "error") is None
    page.click('tr[data-name="broken"]')
    until(lambda: page.text_content('[data-field="detail-name"]') == "broken", what="broken's detail panel")
    assert page.get_attribute('[data-field="detail-state"]', "data-value") == "failing"
    assert broken["index"]["error"] in (page.text_content('[data-field="detail-error"]') or "")
    _screenshot(p, "dashboard-failing.png")
    assert p.errors == []
