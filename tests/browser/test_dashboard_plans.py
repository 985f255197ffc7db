"""The dashboard's payload indexes and search plans (issue 14), in headless Chromium against a real server.

The detail panel must show each payload index with the numbers `GET /collections/{name}` reports, the
searches per plan with their shares, and name the filter keys that were scanned without an index until
one is created.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.browser.conftest import ARTIFACTS, Page, until
from tests.e2e.serverproc import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DIM = 32
N = 2000
LANGS = ("en", "de", "fr", "es")
CAT = {"must": [{"key": "cat", "match": {"value": 2}}]}  # indexed
LANG = {"must": [{"key": "lang", "match": {"value": "de"}}]}  # scanned until indexed


def _info(http: Any, name: str) -> dict[str, Any]:
    info: dict[str, Any] = http.get(f"/collections/{name}").json()["result"]
    return info


def _ready(http: Any, name: str) -> bool:
    info = _info(http, name)
    return (
        info["index"]["state"] == "ready"
        and not info["index"]["pending"]
        and all(p["state"] == "ready" for p in info["payload_schema"].values())
    )


def _search(http: Any, name: str, v: np.ndarray, flt: dict[str, Any] | None) -> str:
    resp = http.post(f"/collections/{name}/points/search", json={"vector": v.tolist(), "limit": 5, "filter": flt})
    resp.raise_for_status()
    strategy: str = resp.json()["strategy"]
    return strategy


def _value(page: Any, selector: str) -> str | None:
    el = page.query_selector(selector)
    return None if el is None else el.get_attribute("data-value")


def _plan_rows(page: Any) -> dict[str, tuple[int, float]]:
    out: dict[str, tuple[int, float]] = {}
    for row in page.query_selector_all('[data-field="plans"] tr[data-strategy]'):
        count = row.query_selector('[data-field="plan-count"]').get_attribute("data-value")
        share = row.query_selector('[data-field="plan-share"]').get_attribute("data-value")
        out[row.get_attribute("data-strategy")] = (int(count), float(share))
    return out


def test_payload_indexes_and_search_plans(
    start_server: Callable[..., ServerProcess], new_page: Callable[..., Page], api: Callable[..., Any]
) -> None:
    srv = start_server()
    http = api(srv.url)
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((N, DIM)).astype(np.float32)
    spec = {"type": "hnsw", "m": 16, "ef_construction": 64}
    http.put("/collections/docs", json={"dim": DIM, "metric": "cosine", "index": spec}).raise_for_status()
    points = [
        {"id": j, "vector": vecs[j].tolist(), "payload": {"cat": j % 5, "lang": LANGS[j % 4], "title": f"doc {j}"}}
        for j in range(N)
    ]
    http.put("/collections/docs/points", json={"points": points}).raise_for_status()
    http.put("/collections/docs/index", json={"field": "cat", "schema": "integer"}).raise_for_status()
    until(lambda: _ready(http, "docs"), timeout=120, what="docs indexed")

    p = new_page()
    page = p.page
    page.goto(srv.url + "/dashboard?refresh=500&collection=docs")
    until(lambda: page.is_visible('[data-field="plans-empty"]'), what="no searches yet")
    assert page.query_selector('[data-field="scan-hint"]') is None

    seen: Counter[str] = Counter()
    for i in range(6):
        seen[_search(http, "docs", vecs[i], None)] += 1
    for i in range(6, 10):
        seen[_search(http, "docs", vecs[i], CAT)] += 1
    for i in range(10, 13):
        seen[_search(http, "docs", vecs[i], LANG)] += 1
    scanned = [s for s in seen if s.endswith("+payload_scan")]
    assert len(seen) == 3 and len(scanned) == 1 and seen[scanned[0]] == 3, seen

    until(lambda: _value(page, '[data-field="plans-total"]') == "13", what="13 searches on the page")
    rows = _plan_rows(page)
    assert {s: c for s, (c, _) in rows.items()} == dict(seen)
    assert {s: round(sh, 4) for s, (_, sh) in rows.items()} == {s: round(c / 13, 4) for s, c in seen.items()}
    # most frequent first, and the scanning plan is flagged
    assert list(rows) == [s for s, _ in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))]
    assert page.query_selector(f'tr[data-strategy="{scanned[0]}"] .pill.warn') is not None
    assert len(page.query_selector_all('[data-field="plans"] .pill.warn')) == 1

    # the payload index table shows what the API reports
    info = _info(http, "docs")
    cat = info["payload_schema"]["cat"]
    row = '[data-field="payload-indexes"] tr[data-key="cat"]'
    assert _value(page, f'{row} [data-field="pi-type"]') == "integer"
    assert _value(page, f'{row} [data-field="pi-state"]') == "ready"
    assert _value(page, f'{row} [data-field="pi-points"]') == str(N) == str(cat["points"])
    assert _value(page, f'{row} [data-field="pi-bytes"]') == str(cat["ram"]) and cat["ram"] > 0
    assert len(page.query_selector_all('[data-field="payload-indexes"] tr[data-key]')) == 1

    # the scanned key is named, with the request that fixes it
    hint = page.query_selector('[data-field="scan-hint"]')
    assert hint is not None
    assert _value(page, '[data-scanned-key="lang"]') == "3"
    assert page.query_selector('[data-scanned-key="cat"]') is None
    assert "PUT /collections/docs/index" in hint.inner_text() and '"field":"lang"' in hint.inner_text()
    page.query_selector('[data-field="plans"]').scroll_into_view_if_needed()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-plans.png"), full_page=True)

    # once `lang` has an index, it joins the table and the hint goes
    http.put("/collections/docs/index", json={"field": "lang", "schema": "keyword"}).raise_for_status()
    until(lambda: _ready(http, "docs"), timeout=60, what="lang indexed")
    plain_filtered = _search(http, "docs", vecs[20], LANG)
    assert "payload_scan" not in plain_filtered
    until(lambda: _value(page, '[data-field="plans-total"]') == "14", what="14 searches on the page")
    until(lambda: page.query_selector('[data-field="scan-hint"]') is None, what="the hint to go")
    lang = _info(http, "docs")["payload_schema"]["lang"]
    row = '[data-field="payload-indexes"] tr[data-key="lang"]'
    assert _value(page, f'{row} [data-field="pi-type"]') == "keyword"
    assert _value(page, f'{row} [data-field="pi-points"]') == str(lang["points"]) == str(N)
    assert _value(page, f'{row} [data-field="pi-bytes"]') == str(lang["ram"])
    assert p.errors == []
