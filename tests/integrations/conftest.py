"""Framework integrations against a real `nestor serve`: one server per module.

Third-party standard suites (LangChain's) write their async tests as bare `async def`, which the
suite-wide strict mode of pytest-asyncio would not run; those tests get the `asyncio` mark here.
"""

from __future__ import annotations

import inspect
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serverproc import ServerProcess

HERE = Path(__file__).parent


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Generator[None, Any, None]:
    # Innermost wrapper: the mark is on the item before pytest-asyncio's wrapper decides to run it.
    outcome = yield
    result = outcome.get_result()
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, pytest.Function) and HERE in item.path.parents and inspect.iscoroutinefunction(obj):
            if item.get_closest_marker("anyio") is None:
                item.add_marker(pytest.mark.asyncio)


@pytest.fixture(scope="module")
def nestor_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = ServerProcess(tmp_path_factory.mktemp("nestor") / "data").start()
    try:
        yield server.url
    finally:
        server.stop()
