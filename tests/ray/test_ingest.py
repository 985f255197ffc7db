"""A Ray Data ingest job loads a JSON Lines file with the hash encoder into a sharded collection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cluster.ingest import ingest_jsonl
from cluster.sharded import ShardedCollection
from index.collection import CollectionOptions
from nestor_client.models import CollectionConfig

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::FutureWarning")

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()


def _write(path: Path, n: int) -> int:
    bad = 0
    with path.open("w") as fh:
        for i in range(n):
            if i % 97 == 5:
                fh.write("{not json\n")
                bad += 1
            elif i % 101 == 7:
                fh.write(json.dumps({"id": i, "body": ""}) + "\n")  # an empty text cannot be embedded
                bad += 1
            elif i % 89 == 3:
                fh.write("\n")  # blank lines are counted, not errors
            else:
                text = " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 6))
                fh.write(json.dumps({"id": i, "body": f"{text} {i}", "n": i}) + "\n")
    return bad


def test_ray_data_ingest_counts_match(tmp_path: Path, cluster: Any) -> None:
    n = 2000
    src = tmp_path / "docs.jsonl"
    bad = _write(src, n)
    blank = sum(1 for i in range(n) if i % 89 == 3 and i % 97 != 5 and i % 101 != 7)
    config = CollectionConfig.model_validate(
        {"dim": 32, "index": {"type": "flat"}, "encoder": {"name": "hash", "config": {"dim": 32}}, "shards": 2}
    )
    coll = ShardedCollection.create("docs", tmp_path / "docs", config, CollectionOptions(), cluster)
    seen: list[int] = []
    try:
        done, report = ingest_jsonl(
            coll, str(src), text_field="body", batch_size=256, workers=1, on_batch=lambda r: seen.append(r.rows)
        )
        assert done
        assert report.rows == n and seen[-1] == n and seen == sorted(seen)
        assert report.failed == bad and len(report.errors) == bad
        assert report.upserted == n - bad - blank
        assert coll.count == n - bad - blank
        line, reason = report.errors[0]
        assert line == 6 and reason  # 1-based line of row 5
        got = coll.get([0, 8], with_payload=True)
        assert [h.payload["n"] for h in got if h.payload] == [0, 8]
        assert got[0].payload is not None and got[0].payload["body"].endswith(" 0")
        # a resumed job writes nothing before its checkpoint, and ends at the same count
        done, again = ingest_jsonl(coll, str(src), text_field="body", batch_size=256, start_row=1500)
        assert done and again.rows == n and again.upserted < n - 1500 + 1
        assert coll.count == n - bad - blank
    finally:
        coll.close()
