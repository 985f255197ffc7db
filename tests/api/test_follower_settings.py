"""A follower process's catalog takes its settings (NESTOR_FOLLOWER_VECTORS, NESTOR_FOLLOWER_CATCH_UP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from index.catalog import Catalog
from index.contract import CollectionOptions
from index.follow import FollowerCatalog
from index.readonly import set_read_only
from nestor_client.models import CollectionConfig
from server.app import create_app
from server.processes import ROLE_ENV, UDS_PATH_ENV
from server.settings import Settings


@pytest.mark.parametrize(("vectors", "mapped"), [(None, False), ("ram", False), ("mapped", True)])
def test_a_follower_keeps_its_vectors_where_the_settings_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vectors: str | None, mapped: bool
) -> None:
    primary = Catalog(tmp_path, CollectionOptions(save_idle_seconds=3600, save_max_seconds=3600))
    try:
        coll, _ = primary.create("c", CollectionConfig.model_validate({"dim": 4, "metric": "l2"}))
        coll.upsert([1, 2, 3], np.eye(3, 4, dtype=np.float32))
    finally:
        primary.close()
    monkeypatch.setenv(ROLE_ENV, "follower")
    monkeypatch.setenv(UDS_PATH_ENV, str(tmp_path / "primary.sock"))  # writes would go there: none here
    extra = {} if vectors is None else {"follower_vectors": vectors}
    app = create_app(Settings(data_dir=tmp_path, follower_catch_up=False, **extra))
    try:
        with TestClient(app) as http:
            catalog = app.state.catalog
            assert isinstance(catalog, FollowerCatalog)
            assert catalog.map_vectors is mapped and catalog.catch_up_enabled is False
            hits = http.post("/collections/c/points/search", json={"vector": [1, 0, 0, 0], "limit": 1}).json()
            assert hits["result"][0]["id"] == 1
            (store,) = [f.vectors for f in catalog.get("c").dense_fields()]
            assert store.on_disk is mapped
    finally:
        set_read_only(False)
