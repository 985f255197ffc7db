"""Browser tests: a real `nestor serve` process and the system's headless Chromium, driven by Playwright.

Playwright never downloads a browser here: it launches Debian's `/usr/bin/chromium` (scripts/test
installs it). Without Chromium or Playwright these tests skip locally and fail under CI, so a CI run
cannot pass by skipping them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.serverproc import ServerProcess, free_port

CHROMIUM = os.environ.get("NESTOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("NESTOR_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))
# Fast probe and fine-grained stats, so a test sees them move within seconds.
FAST_ENV = {
    "NESTOR_PROBE_INTERVAL_SECONDS": "0.3",
    "NESTOR_STATS_BUCKET_SECONDS": "2",
    "NESTOR_STATS_WINDOW_SECONDS": "120",
}


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (scripts/test installs Debian's chromium)"
    return None


@pytest.fixture(scope="module")  # not session: Playwright's loop would stay running under later asyncio tests
def browser() -> Iterator[Any]:
    why = _missing()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run in CI: {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A page plus every console error and uncaught exception it produced."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Page]]:
    contexts: list[Any] = []

    def make(width: int = 1440, height: int = 900) -> Page:
        ctx = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(ctx)
        return Page(ctx.new_page())

    yield make
    for ctx in contexts:
        ctx.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def start(env: dict[str, str] | None = None) -> ServerProcess:
        data = tmp_path / f"data{len(servers)}"
        data.mkdir()
        roots = {"NESTOR_INGEST_ROOTS": str(tmp_path)}  # tests write ingest sources beside the data
        srv = ServerProcess(data, env={**FAST_ENV, **roots, **(env or {})}).start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


class InProcessServer:
    """The app served by uvicorn on a thread of the test process, so a test can monkeypatch the engine first.

    Settings come from keywords, not the environment (FAST_ENV's values are the defaults here too)."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        import uvicorn

        from server.app import create_app
        from server.settings import Settings

        fast = {k.removeprefix("NESTOR_").lower(): v for k, v in FAST_ENV.items()}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(Settings(data_dir=data_dir, port=self.port, **{**fast, **settings}))
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)  # off the main thread it installs no signal handlers
        self._thread = threading.Thread(target=self._server.run, name="nestor-test-server", daemon=True)

    def start(self, timeout: float = 60.0) -> InProcessServer:
        self._thread.start()
        until(lambda: _ready(self.url), timeout=timeout, what="the in-process server to be ready")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=60)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def start_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., InProcessServer]]:
    """`start_app(**settings)`: an in-process server. It depends on `monkeypatch`, so patches a test makes
    stay in place until the server has stopped."""
    servers: list[InProcessServer] = []

    def start(**settings: Any) -> InProcessServer:
        data = tmp_path / f"app{len(servers)}"
        data.mkdir()
        srv = InProcessServer(data, **settings).start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


def until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture
def api() -> Iterator[Callable[..., httpx.Client]]:
    """`api(url, headers)`: an HTTP client for the server, closed after the test."""
    clients: list[httpx.Client] = []

    def make(url: str, headers: dict[str, str] | None = None) -> httpx.Client:
        clients.append(httpx.Client(base_url=url, timeout=60, headers=headers or {}))
        return clients[-1]

    yield make
    for c in clients:
        c.close()
