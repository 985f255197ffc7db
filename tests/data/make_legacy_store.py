"""Write the data directory `legacy_store.tar.gz` with an older Nestor, for tests/unit/index/test_legacy_store.py.

Run with that version's code first on the path, from outside the repository (so the working tree is not on
sys.path); it was made with main at 6f35b38, before named vectors:

    git worktree add /tmp/oldmain 6f35b38 && (cd /tmp/oldmain && python setup.py build_ext --inplace)
    cd /tmp && PYTHONPATH=/tmp/oldmain /work/main/.venv/bin/python /work/main/tests/data/make_legacy_store.py /work/main/tests/data

It records, beside the tarball, what the old version answered (`legacy_store.json`): counts, stored
vectors and payloads, and exact search results, which the new version must reproduce bit for bit.
"""

from __future__ import annotations

import base64
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from index.catalog import Catalog
from index.collection import Query
from nestor_client.models import CollectionConfig, SearchParams

CONFIGS = {
    "dense": {"dim": 8, "metric": "cosine", "index": {"type": "hnsw", "m": 8}},
    "l2flat": {"dim": 8, "metric": "l2", "index": {"type": "flat"}},
    "int8": {"dim": 16, "quantize": {"type": "int8"}, "training": {"threshold": 64}, "index": {"type": "hnsw", "m": 8}},
    "muvera": {
        "dim": 8,
        "metric": "dot",
        "multivector": {"type": "muvera", "k_sim": 2, "d_proj": 4, "r_reps": 2, "token_dtype": "float32"},
        "index": {"type": "hnsw", "m": 8},
    },
    "maxsim": {"dim": 8, "metric": "dot", "multivector": {"type": "maxsim", "token_dtype": "float32"}},
}


def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


def main(out: Path) -> None:
    rng = np.random.default_rng(7)
    expected: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        cat = Catalog(data)
        for name, raw in CONFIGS.items():
            coll = cat.create(name, CollectionConfig.model_validate(raw))[0]
            dim = raw["dim"]
            n = 120 if name == "int8" else 40
            ids = list(range(n))
            pays = [{"i": i, "tag": "even" if i % 2 == 0 else "odd"} for i in ids]
            if "multivector" in raw:
                docs = [rng.normal(size=(int(rng.integers(2, 5)), dim)).astype(np.float32) for _ in ids]
                coll.upsert(ids, docs, pays)
                coll.upsert([3], [docs[4]], [{"i": 3, "tag": "overwritten"}])
                queries = [rng.normal(size=(3, dim)).astype(np.float32) for _ in range(3)]
            else:
                x = rng.normal(size=(n, dim)).astype(np.float32)
                coll.upsert(ids, x, pays)
                coll.upsert([3], x[4:5], [{"i": 3, "tag": "overwritten"}])
                queries = [rng.normal(size=dim).astype(np.float32) for _ in range(3)]
            coll.delete([5, 6])
            deadline = time.monotonic() + 60
            while coll.info()["index"].get("pending") and time.monotonic() < deadline:
                time.sleep(0.05)
            got = coll.get([0, 3, 7, 5], with_payload=True, with_vector=True)
            expected[name] = {
                "count": coll.count,
                "points": {
                    str(h.id): {
                        "payload": h.payload,
                        "vector": b64(np.asarray(h.multivector if h.multivector is not None else h.vector)),
                    }
                    for h in got
                },
                "queries": [b64(q) for q in queries],
                "shapes": [list(q.shape) for q in queries],
                "exact": [
                    [[h.id, h.score] for h in r.hits]
                    for r in coll.search([Query(q, limit=5, params=SearchParams(exact=True)) for q in queries])
                ],
            }
        cat.close()  # saves every index
        with tarfile.open(out / "legacy_store.tar.gz", "w:gz") as tar:
            tar.add(data, arcname="data")
    (out / "legacy_store.json").write_text(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
