"""The durable token store: append, reopen, torn writes, undo, snapshots, and scores against MaxSim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from index.tokens import TokenFiles
from quantization.maxsim import maxsim_scores

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def batch(seed: int, n: int, dim: int = 8) -> tuple[F32, I64]:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 6, size=n).astype(np.int64)
    return rng.standard_normal((int(counts.sum()), dim)).astype(np.float32), counts


# int8 codes are off by up to max|x| / 254 per coordinate: about 0.01 here, times |q|_1 per query token
@pytest.mark.parametrize("dtype, atol", [("float32", 1e-5), ("float16", 1e-2), ("int8", 0.2)])
def test_append_reopen_and_scores(tmp_path: Path, dtype: str, atol: float) -> None:
    t1, c1 = batch(0, 30)
    t2, c2 = batch(1, 2000)  # forces the RAM arrays to grow
    store = TokenFiles(tmp_path, 8, dtype, 0)  # type: ignore[arg-type]
    old = store.snapshot()
    assert store.append(t1, c1) == 0 and store.append(t2, c2) == 30
    assert old.n_docs == 0  # an older snapshot is unaffected by later writes
    tokens, counts = np.concatenate([t1, t2]), np.concatenate([c1, c2])
    offsets = np.concatenate([[0], np.cumsum(counts)])
    q = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)
    labels = np.array([2029, 0, 17, 17, 5], np.int64)
    want = maxsim_scores(q, tokens, offsets, labels)
    np.testing.assert_allclose(store.snapshot().scores(q, labels), want, atol=atol)
    np.testing.assert_allclose(store.snapshot().scores(q), maxsim_scores(q, tokens, offsets), atol=atol)
    np.testing.assert_allclose(store.snapshot().scores(q, n_docs=10), maxsim_scores(q, tokens, offsets)[:10], atol=atol)
    per = {"float32": 32, "float16": 16, "int8": 12}[dtype]
    assert store.bytes_per_token == per and store.token_bytes() == len(tokens) * per
    assert store.disk_bytes() == len(tokens) * per + 8 * 2030
    store.close()

    again = TokenFiles(tmp_path, 8, dtype, 2030)  # type: ignore[arg-type]
    assert again.n_docs == 2030 and again.n_tokens == len(tokens)
    np.testing.assert_allclose(again.snapshot().scores(q, labels), want, atol=atol)
    np.testing.assert_allclose(again.snapshot().tokens(17), tokens[offsets[17] : offsets[18]], atol=atol)
    again.close()


def test_uncommitted_rows_are_truncated_on_open(tmp_path: Path) -> None:
    t1, c1 = batch(0, 10)
    store = TokenFiles(tmp_path, 8, "int8", 0)
    store.append(t1, c1)
    store.append(*batch(1, 5))  # written and fsynced, but say its SQLite commit never happened
    store.close()
    sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    again = TokenFiles(tmp_path, 8, "int8", 10)
    assert again.n_docs == 10 and again.n_tokens == int(c1.sum())
    assert again.disk_bytes() == int(c1.sum()) * 12 + 80 < sum(sizes.values())
    assert again.append(*batch(2, 3)) == 10  # the torn labels are handed out again
    again.close()
    with pytest.raises(RuntimeError):
        TokenFiles(tmp_path, 8, "int8", 20)  # more committed than stored: refuse to open


def test_truncate_undoes_an_append(tmp_path: Path) -> None:
    store = TokenFiles(tmp_path, 8, "float16", 0)
    t1, c1 = batch(0, 4)
    store.append(t1, c1)
    before = store.disk_bytes()
    start = store.append(*batch(1, 3))
    store.truncate(start)
    assert store.n_docs == 4 and store.disk_bytes() == before
    t3, c3 = batch(3, 2)
    assert store.append(t3, c3) == 4
    np.testing.assert_allclose(store.snapshot().tokens(4), t3[: c3[0]], atol=1e-2)
    store.close()
