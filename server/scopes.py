"""Scoped API keys: what one key may reach (its grant), and the JSON entry that configures it.

A key is either **unscoped** (a global role, the `role:sha256` entries) or **scoped**: limited to named
collections, each with `read` or `write` access and, optionally, a payload filter. A scoped key's reads
of a collection with a filter are ANDed with it (`{"must": [scope_filter, request_filter]}`), so the key
never sees a point outside it. Writes cannot be held to a filter in every case: a filtered scope may
delete (the delete is ANDed with the filter, in one engine call) but not upsert (the point it would
overwrite could sit outside the filter, and checking that first races other writers). Scoped keys never
have the admin role. docs/security.md has the format and the rules per route.

This module only parses and describes grants; `server.auth` enforces them. The engine never sees keys:
it gets ordinary filters.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from index.errors import NestorError
from index.filters import check_filter
from nestor_client.models import Filter

__all__ = ["CollectionScope", "Grant", "Role", "and_filter", "parse_json_entry"]

_HASH = re.compile(r"^[0-9a-f]{64}$")


class Role(enum.IntEnum):
    read = 1  # search, get, count, collection info, metrics
    write = 2  # plus upsert, delete, ingest jobs
    admin = 3  # plus create and delete collections, snapshots, dashboard actions


@dataclass(frozen=True)
class CollectionScope:
    """One collection a scoped key reaches: its access (read or write) and the filter its reads get."""

    access: Role
    filter: Filter | None = None


@dataclass(frozen=True)
class Grant:
    """What a key may do. `collections` None: unscoped, `role` everywhere. Else only those collections."""

    role: Role
    collections: Mapping[str, CollectionScope] | None = None

    @property
    def scoped(self) -> bool:
        return self.collections is not None


def and_filter(scope: Filter | None, request: Filter | None) -> Filter | None:
    """The filter a scoped read runs with: the scope's ANDed with the request's (either may be absent)."""
    if scope is None:
        return request
    if request is None:
        return scope
    return Filter(must=[scope, request])


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str
    role: Literal["read", "write", "admin"] | None = None
    collections: dict[str, Literal["read", "write"]] | list[str] | None = None
    filter: dict[str, dict[str, Any]] | None = None
    name: str | None = None  # who holds the key: for the operator, not checked


def parse_json_entry(text: str) -> tuple[str, Grant]:
    """One JSON key entry -> (the key's SHA-256, its grant); ValueError naming what is wrong."""
    try:
        entry = _Entry.model_validate(orjson.loads(text))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise ValueError(f"API key entry {text[:40]!r}...: {exc}") from None
    digest = entry.sha256.strip().lower().removeprefix("sha256:")
    who = f"API key entry {entry.name or digest[:12]!r}"
    if not _HASH.match(digest):
        raise ValueError(
            f"{who}: sha256 must be the key's SHA-256 (64 hex digits), not the key itself; "
            "make one with `python -m server.auth new ROLE`"
        )
    role = Role[entry.role] if entry.role else None
    if entry.collections is None:
        if entry.filter:
            raise ValueError(f"{who}: a filter needs collections (it applies per collection)")
        if role is None:
            raise ValueError(f"{who}: needs a role, or collections")
        return digest, Grant(role)
    if role is Role.admin:
        raise ValueError(f"{who}: a scoped key cannot be admin (admin routes need an unscoped key)")
    if isinstance(entry.collections, list):  # every listed collection gets the entry's role (default read)
        access = dict.fromkeys(entry.collections, (role or Role.read).name)
    else:
        access = dict(entry.collections)
    if not access:
        raise ValueError(f"{who}: collections is empty (the key would reach nothing)")
    filters = entry.filter or {}
    if stray := sorted(set(filters) - set(access)):
        raise ValueError(f"{who}: filter for {stray} which is not in its collections")
    scopes: dict[str, CollectionScope] = {}
    for name, level in access.items():
        if role is not None and Role[level] > role:
            raise ValueError(f"{who}: role {role.name} but {level} access to collection {name!r}")
        flt = None
        if name in filters:
            try:
                flt = Filter.model_validate(filters[name])
                check_filter(flt)
            except (ValidationError, NestorError) as exc:
                raise ValueError(f"{who}: filter for collection {name!r}: {exc}") from None
        scopes[name] = CollectionScope(Role[level], flt)
    top = max(s.access for s in scopes.values())
    return digest, Grant(role or top, scopes)
