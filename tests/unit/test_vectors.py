"""The float32 vector store, in RAM and memory-mapped (`on_disk`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.vectors import VectorStore


@pytest.mark.parametrize("on_disk", [False, True])
def test_rows_round_trip_and_survive_reopen(tmp_path: Path, on_disk: bool) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9000, 16)).astype(np.float32)
    store = VectorStore(tmp_path / "v.f32", 16, on_disk=on_disk)
    assert store.append(x[:5000]) == 0 and store.append(x[5000:]) == 5000
    for labels in (np.arange(9000), rng.choice(9000, 700, replace=False), np.array([8999, 0, 4096, 4095] * 80)):
        np.testing.assert_array_equal(store.take(labels), x[labels])
    np.testing.assert_array_equal(store.view(), x)
    assert store.ram_bytes() == (0 if on_disk else store.buffer().nbytes)
    store.append(x[:10])
    store.truncate(9000)  # an append whose transaction did not commit
    store.close()
    again = VectorStore(tmp_path / "v.f32", 16, rows=9000, on_disk=on_disk)
    assert again.rows == 9000
    np.testing.assert_array_equal(again.take(np.arange(0, 9000, 7)), x[::7])
    again.close()
