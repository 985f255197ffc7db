"""Overload: past `max_pending_writes` writes in progress, a write gets 503 `overloaded` with Retry-After
at once, changes nothing, and reads still pass; once the queue drains, writes are accepted again."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from nestor_client import NestorClient
from nestor_client.errors import ServerError
from server.app import create_app
from server.settings import Settings


def test_writes_past_the_limit_get_503_with_retry_after(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", max_pending_writes=2))
    with TestClient(app) as http:
        c = NestorClient(http_client=http)  # type: ignore[arg-type]
        c.create_collection("c", dim=4, metric="dot")
        coll = app.state.catalog.get("c")
        entered = threading.Semaphore(0)
        real_upsert = coll.upsert

        def upsert(*args: Any, **kwargs: Any) -> Any:
            entered.release()  # this write is admitted and in the engine
            return real_upsert(*args, **kwargs)

        coll.upsert = upsert
        coll._write_lock.acquire()  # the engine is busy: admitted writes wait on the collection's lock
        done: list[int] = []
        writers = [
            threading.Thread(target=lambda i=i: done.append(c.upsert("c", ids=[i], vectors=np.ones((1, 4))).seq))
            for i in (1, 2)
        ]
        third = threading.Thread()
        try:
            for t in writers:
                t.start()
            for _ in writers:
                assert entered.acquire(timeout=30)
            body = {"points": [{"id": 3, "vector": [1.0, 2.0, 3.0, 4.0]}]}
            answers: list[Any] = []
            third = threading.Thread(target=lambda: answers.append(http.put("/collections/c/points", json=body)))
            third.start()
            third.join(timeout=10)  # admitted, it would wait on the lock: refused, it is answered at once
            assert answers, "the write past the limit was queued, not refused"
            r = answers[0]
            assert r.status_code == 503
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"]["type"] == "overloaded"
            with pytest.raises(ServerError) as err:  # the client's view of it
                c.delete("c", ids=[1])
            assert err.value.status == 503 and err.value.type == "overloaded"
            started = time.monotonic()
            assert c.count("c") == 0  # reads are not refused, and see nothing of the queued writes yet
            assert time.monotonic() - started < 10
        finally:
            coll._write_lock.release()
            for t in [*writers, third]:
                if t.ident is not None:  # started
                    t.join(timeout=30)
        assert len(done) == 2  # the admitted writes completed
        assert sorted(int(r.id) for r in c.get("c", [1, 2, 3])) == [1, 2]  # the refused one changed nothing
        c.upsert("c", ids=[3], vectors=np.ones((1, 4)))  # the queue drained: accepted again
        c.delete("c", ids=[1])
        assert c.count("c") == 2
