"""Annotated dependencies, so handler signatures read like documentation.

They are `async` on purpose: FastAPI runs sync dependencies in the threadpool, a thread hop per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from index.catalog import Catalog
from index.errors import NotReady
from server.ingest.runner import JobRunner
from server.settings import Settings

__all__ = ["CatalogDep", "JobsDep", "SettingsDep"]


async def _catalog(request: Request) -> Catalog:
    catalog: Catalog | None = getattr(request.app.state, "catalog", None)
    if catalog is None or not request.app.state.ready:
        raise NotReady("the server is still recovering its collections")
    return catalog


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _jobs(request: Request) -> JobRunner:
    jobs: JobRunner | None = getattr(request.app.state, "jobs", None)
    if jobs is None or not request.app.state.ready:
        raise NotReady("the server is still recovering its collections and jobs")
    return jobs


CatalogDep = Annotated[Catalog, Depends(_catalog)]
JobsDep = Annotated[JobRunner, Depends(_jobs)]
SettingsDep = Annotated[Settings, Depends(_settings)]
