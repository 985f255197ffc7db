"""Power-loss tests run on lossyfs, a FUSE filesystem that forgets what was not fsynced (lossyfs.py).

Without FUSE (no /dev/fuse, no fusermount3, no libfuse) they skip locally and fail under CI, so a CI
run cannot pass by skipping them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.powerloss.mount import LossyMount, require_fuse


@pytest.fixture
def lossy(tmp_path: Path) -> Iterator[LossyMount]:
    require_fuse()
    m = LossyMount(tmp_path / "fs")
    try:
        yield m.mount()
    finally:
        m.unmount()
