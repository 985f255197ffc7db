"""Suite-wide set-up: the process gets the thread-pool defaults a server gets at start-up."""

from __future__ import annotations

import pytest

from index.runtime import configure_threads


def pytest_configure(config: pytest.Config) -> None:
    # Before any test module imports faiss; the variables also reach the servers tests start as subprocesses.
    configure_threads()
