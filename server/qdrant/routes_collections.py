"""Qdrant's collection routes: list, info, exists, create, update, delete; aliases; payload indexes."""

from __future__ import annotations

import functools
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from index.aliases import AliasAction
from index.errors import CollectionExists, CollectionNotFound, LimitExceeded
from nestor_client.models import PayloadIndexParams, PayloadSchemaType
from server.auth import Role, require
from server.deps import GrantDep
from server.qdrant.config import to_config, to_info
from server.qdrant.models import CreateCollection, CreateFieldIndex
from server.qdrant.wire import QdrantError, catalog_of, collection, ok, settings_of, updated

router = APIRouter(prefix="/collections", tags=["qdrant-collections"])
aliases = APIRouter(tags=["qdrant-aliases"])


@router.get("", dependencies=[require(Role.read, listing=True)])
async def list_collections(request: Request, grant: GrantDep) -> Response:
    started = time.perf_counter()
    names = catalog_of(request).names()
    if grant.collections is not None:  # a scoped key sees only the collections in its scope
        names = [n for n in names if n in grant.collections]
    return ok({"collections": [{"name": n} for n in names]}, started)


@router.get("/{name}", dependencies=[require(Role.read)])
async def get_collection(name: str, request: Request) -> Response:
    started = time.perf_counter()
    coll = collection(request, name)
    return ok(await run_in_threadpool(to_info, coll), started)


@router.get("/{name}/exists", dependencies=[require(Role.read)])
async def collection_exists(name: str, request: Request) -> Response:
    started = time.perf_counter()
    catalog = catalog_of(request)  # an alias exists too: every route resolves it
    return ok({"exists": name in catalog.names() or catalog.aliases.resolve(name) is not None}, started)


@router.put("/{name}", dependencies=[require(Role.admin)])
async def create_collection(name: str, body: CreateCollection, request: Request) -> Response:
    started = time.perf_counter()
    catalog, settings = catalog_of(request), settings_of(request)
    config = to_config(body)
    for vname, vcfg in config.vector_fields().items():
        if vcfg.dim > settings.max_dim:
            raise LimitExceeded(
                f"{f'vector {vname!r}: ' if vname else ''}size {vcfg.dim} exceeds max_dim {settings.max_dim}"
            )
    if name in catalog.names():  # Qdrant refuses a second create, whatever its config
        raise CollectionExists(f"Collection `{name}` already exists!")
    if catalog.aliases.resolve(name) is not None:
        raise CollectionExists(f"Alias with the same name `{name}` already exists!")
    await run_in_threadpool(catalog.create, name, config)
    return ok(True, started)


# Settings of Qdrant's update that change nothing Nestor keeps (its optimizer and replication knobs).
_HARMLESS_UPDATES = {"optimizers_config", "params", "strict_mode_config", "metadata"}


@router.patch("/{name}", dependencies=[require(Role.admin)])
async def update_collection(name: str, body: dict[str, Any], request: Request) -> Response:
    started = time.perf_counter()
    collection(request, name)  # 404 for a missing collection
    refused = sorted(k for k, v in body.items() if v is not None and k not in _HARMLESS_UPDATES)
    if refused:
        raise QdrantError(
            f"Bad request: Nestor cannot change {', '.join(refused)} of an existing collection; "
            "create a new collection and copy the points"
        )
    return ok(True, started)


@router.delete("/{name}", dependencies=[require(Role.admin)])
async def delete_collection(name: str, request: Request) -> Response:
    started = time.perf_counter()
    try:
        await run_in_threadpool(catalog_of(request).delete, name)
    except CollectionNotFound:
        return ok(False, started)
    return ok(True, started)


def _alias_action(raw: Any) -> AliasAction:
    """One of Qdrant's alias operations: {"create_alias": {...}}, {"delete_alias": {...}}, {"rename_alias": {...}}."""
    if not isinstance(raw, dict) or len(raw) != 1:
        raise QdrantError("Format error in JSON body: each action is one of create_alias, delete_alias, rename_alias")
    ((op, args),) = raw.items()
    if not isinstance(args, dict):
        raise QdrantError(f"Format error in JSON body: {op} takes an object")

    def text(key: str) -> str:
        value = args.get(key)
        if not isinstance(value, str):
            raise QdrantError(f"Format error in JSON body: {op}.{key} must be a string")
        return value

    if op == "create_alias":
        return AliasAction("create", text("alias_name"), collection=text("collection_name"))
    if op == "delete_alias":
        return AliasAction("delete", text("alias_name"))
    if op == "rename_alias":
        return AliasAction("rename", text("old_alias_name"), new_name=text("new_alias_name"))
    raise QdrantError(f"Format error in JSON body: unknown alias operation {op!r}")


def _aliases(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"aliases": [{"alias_name": a, "collection_name": c} for a, c in pairs]}


@router.post("/aliases", dependencies=[require(Role.admin)])
async def update_aliases(body: dict[str, Any], request: Request) -> Response:
    started = time.perf_counter()
    raw = body.get("actions")
    if not isinstance(raw, list):
        raise QdrantError("Format error in JSON body: actions must be a list")
    actions = [_alias_action(a) for a in raw]  # every action parsed before any applies
    await run_in_threadpool(catalog_of(request).update_aliases, actions)
    return ok(True, started)


@router.get("/{name}/aliases", dependencies=[require(Role.read)])
async def collection_aliases(name: str, request: Request) -> Response:
    started = time.perf_counter()
    catalog = catalog_of(request)
    if name not in catalog.names():
        raise CollectionNotFound(name)
    return ok(_aliases(catalog.aliases.items(name)), started)


@aliases.get("/aliases", dependencies=[require(Role.read, listing=True)])
async def list_aliases(request: Request, grant: GrantDep) -> Response:
    started = time.perf_counter()
    pairs = catalog_of(request).aliases.items()
    if grant.collections is not None:  # a scoped key sees only aliases of the collections in its scope
        pairs = [(a, c) for a, c in pairs if c in grant.collections]
    return ok(_aliases(pairs), started)


_SCHEMAS = {t.value for t in PayloadSchemaType}


def _schema(raw: str | dict[str, Any] | None) -> PayloadSchemaType | PayloadIndexParams:
    """Qdrant's field schema (a type name, or params with a `type`) as Nestor's; other params are harmless."""
    kind = raw.get("type") if isinstance(raw, dict) else raw
    if kind is None:
        raise QdrantError("Format error in JSON body: field_schema is required (Nestor does not infer it)")
    if kind not in _SCHEMAS:
        raise QdrantError(f"Bad request: payload index type {kind} is not supported by Nestor ({sorted(_SCHEMAS)})")
    if isinstance(raw, dict) and raw.get("is_tenant") and kind == "keyword":
        return PayloadIndexParams(type=PayloadSchemaType.keyword, is_tenant=True)
    return PayloadSchemaType(kind)


@router.put("/{name}/index", dependencies=[require(Role.admin)])
async def create_field_index(name: str, body: CreateFieldIndex, request: Request, wait: bool = True) -> Response:
    started = time.perf_counter()
    coll = collection(request, name)
    schema = _schema(body.field_schema)
    await run_in_threadpool(functools.partial(coll.create_payload_index, body.field_name, schema, wait=wait))
    return updated(coll.seq, started, wait=wait)


@router.delete("/{name}/index/{field_name}", dependencies=[require(Role.admin)])
async def delete_field_index(name: str, field_name: str, request: Request, wait: bool = True) -> Response:
    started = time.perf_counter()
    coll = collection(request, name)
    await run_in_threadpool(coll.delete_payload_index, field_name)
    return updated(coll.seq, started, wait=wait)
