"""The `Transform` protocol, shaped like faiss `VectorTransform`.

A transform is fitted once (`fit`), then maps vectors (`transform`). Its whole fitted state is a
JSON-able dict of scalars plus named numpy arrays (`state`/`from_state`), so it persists as JSON
plus `.npy` and never through pickle. Every random draw comes from a seed held in its config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["FloatArray", "Transform", "load_state", "save_state"]

FloatArray = npt.NDArray[np.float32]


@runtime_checkable
class Transform(Protocol):
    @property
    def d_in(self) -> int: ...

    @property
    def d_out(self) -> int: ...

    @property
    def is_fitted(self) -> bool: ...

    def fit(self, x: FloatArray, queries: FloatArray | None = None) -> Self: ...

    def transform(self, x: FloatArray) -> npt.NDArray[Any]: ...

    def state(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]: ...

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> Self: ...


def save_state(directory: Path, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> None:
    """Write `meta.json` plus one `.npy` per array into `directory` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        np.save(directory / f"{name}.npy", arr, allow_pickle=False)
    (directory / "meta.json").write_text(json.dumps(meta, sort_keys=True))


def load_state(directory: Path) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    meta = json.loads((directory / "meta.json").read_text())
    arrays = {p.stem: np.load(p, allow_pickle=False) for p in sorted(directory.glob("*.npy"))}
    return meta, arrays
