"""Annotated dependencies, so handler signatures read like documentation.

They are `async` on purpose: FastAPI runs sync dependencies in the threadpool, a thread hop per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from index.catalog import Catalog
from index.errors import NotReady
from nestor_client.models import Filter
from server.auth import Forbidden, request_grant
from server.ingest.runner import JobRunner
from server.scopes import Grant
from server.settings import Settings

__all__ = ["CatalogDep", "GrantDep", "JobsDep", "ScopeFilterDep", "SettingsDep"]


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


async def _grant(request: Request) -> Grant:
    return request_grant(request)


async def _scope_filter(request: Request) -> Filter | None:
    """The payload filter the key's scope puts on the path's collection: every read ANDs it in.

    `require(..., filtered=True)` on the route has checked the access; this fails closed regardless."""
    grant = request_grant(request)
    if grant.collections is None:
        return None
    name = request.path_params.get("name")
    scope = grant.collections.get(name) if isinstance(name, str) else None
    if scope is None:
        raise Forbidden(f"the API key has no access to collection {name!r}")
    return scope.filter


CatalogDep = Annotated[Catalog, Depends(_catalog)]
GrantDep = Annotated[Grant, Depends(_grant)]
JobsDep = Annotated[JobRunner, Depends(_jobs)]
ScopeFilterDep = Annotated[Filter | None, Depends(_scope_filter)]
SettingsDep = Annotated[Settings, Depends(_settings)]
