"""API keys and roles.

A key is presented as `Authorization: Bearer <key>` or `api-key: <key>`. The server never holds a key
itself, only its SHA-256 (keys are long random tokens, so a plain unsalted hash is enough, as for
GitHub or Stripe tokens). Each hash maps to one grant (`server.scopes`): a role, where roles nest
`read` < `write` < `admin`, and for a scoped key the collections it may reach, each with read or write
access and an optional payload filter that its reads are ANDed with.

Two layers, so that a request without a valid key is refused before its body is read:

- `AuthGate`, an ASGI middleware, authenticates every request except the public paths (liveness,
  readiness, the OpenAPI document and its pages, the dashboard page). No key or an unknown key is
  401. It leaves the key's grant in the request scope.
- `require(role)`, a dependency on each route, authorises: a role below the route's is 403. For a
  scoped key it also checks the collection the path names (`{name}`): out of scope, too little access,
  or a filtered scope on a route that cannot apply the filter is 403; a route naming no collection is
  403 unless it lists collections (and shows only those in scope). `ScopeFilterDep` (`server.deps`)
  hands the route the filter to AND into its reads. The single-search fast path calls `authorize`
  itself (it is a plain Starlette route).

`tests/api/test_auth.py` enumerates `app.routes` and fails for a route that declares no role.

With auth off (no keys configured, or `NESTOR_AUTH=off`) every request gets `admin`, and startup
logs a warning saying so. Make a key with `python -m server.auth new admin`.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sys
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

from fastapi import Depends, Request, Security
from fastapi.params import Depends as DependsParam
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from index.errors import NestorError
from nestor_client.models import Filter
from server.scopes import Grant, Role, parse_json_entry

__all__ = [
    "PUBLIC_PATHS",
    "AuthGate",
    "Forbidden",
    "KeyRing",
    "Role",
    "Unauthorized",
    "authorize",
    "gate_only",
    "hash_key",
    "request_grant",
    "require",
    "route_role",
]

GRANT_KEY = "nestor.grant"
# Holds no data: probes, the API description, and the dashboard page (its data calls carry a key).
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/dashboard", "/dashboard/"}
    # the Qdrant surface's root (its version, which qdrant-client checks) and probes, as Qdrant exempts them
    | {"/qdrant", "/qdrant/", "/qdrant/healthz", "/qdrant/livez", "/qdrant/readyz"}
)
_HASH = re.compile(r"^[0-9a-f]{64}$")


class Unauthorized(NestorError):
    status = 401
    type = "unauthorized"


class Forbidden(NestorError):
    status = 403
    type = "forbidden"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """SHA-256 of each key -> its grant. `enabled` False means every request is unscoped `admin`."""

    def __init__(self, hashes: dict[str, Grant], *, enabled: bool) -> None:
        self.hashes = hashes
        self.enabled = enabled

    @classmethod
    def parse(cls, entries: Iterable[str], *, mode: str = "auto") -> KeyRing:
        """From `role:sha256hex` entries or JSON objects (scoped keys, `server.scopes`); blank entries and
        `#` comments (not inside a JSON entry) are skipped. `mode`: auto, on or off."""
        hashes: dict[str, Grant] = {}
        for raw in entries:
            if raw.strip().startswith("{"):
                digest, grant = parse_json_entry(raw.strip())
                hashes[digest] = grant
                continue
            entry = raw.split("#", 1)[0].strip()
            if not entry:
                continue
            role_name, sep, digest = entry.partition(":")
            role_name, digest = role_name.strip().lower(), digest.strip().lower().removeprefix("sha256:")
            if not sep or role_name not in Role.__members__:
                raise ValueError(
                    f"API key entry {entry[:12]!r}...: expected role:sha256, role one of read, write, admin"
                )
            if not _HASH.match(digest):
                raise ValueError(
                    f"API key entry for role {role_name}: expected the key's SHA-256 (64 hex digits), not the key "
                    "itself; make one with `python -m server.auth new ROLE`"
                )
            hashes[digest] = Grant(Role[role_name])
        if mode == "on" and not hashes:
            raise ValueError("NESTOR_AUTH=on but no API keys are configured (NESTOR_API_KEYS or NESTOR_API_KEYS_FILE)")
        enabled = mode == "on" or (mode == "auto" and bool(hashes))
        return cls(hashes, enabled=enabled)

    @classmethod
    def from_settings(cls, keys: str, keys_file: Path | None, mode: str) -> KeyRing:
        """`keys`: comma-separated `role:sha256` entries, or a JSON array of entries. The file: one entry
        a line, a JSON object (a scoped key) or comma-separated `role:sha256` entries."""
        entries = _split(keys) if not keys.lstrip().startswith("[") else _json_array(keys)
        if keys_file is not None:
            for line in keys_file.read_text().splitlines():
                entries += [line] if line.lstrip().startswith("{") else _split(line)
        return cls.parse(entries, mode=mode)

    def grant_of(self, key: str | None) -> Grant | None:
        if not self.enabled:
            return _OPEN
        if not key:
            return None
        # A lookup by the key's digest: timing can at most reveal a digest prefix, which does not help
        # anyone guess a key.
        return self.hashes.get(hash_key(key))

    def role_of(self, key: str | None) -> Role | None:
        grant = self.grant_of(key)
        return None if grant is None else grant.role


_OPEN = Grant(Role.admin)  # auth off


def _split(text: str) -> list[str]:
    return text.replace(",", "\n").splitlines()


def _json_array(text: str) -> list[str]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"NESTOR_API_KEYS is not a valid JSON array of key entries: {exc}") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError("NESTOR_API_KEYS: a JSON value must be an array of key entries (objects)")
    return [json.dumps(i) for i in items]


def _presented_key(scope: Scope) -> str | None:
    name: bytes
    value: bytes
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"api-key" and value:
            return value.decode("latin-1").strip()
    return None


class AuthGate:
    """Refuses a request to a non-public path without a valid key (401) before its body is read."""

    def __init__(self, app: ASGIApp, keyring: KeyRing) -> None:
        self.app = app
        self.keyring = keyring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = _presented_key(scope)
        grant = self.keyring.grant_of(key)
        if grant is None and scope["path"] not in PUBLIC_PATHS:
            why = "an API key is required" if key is None else "the API key is not valid"
            await _refuse(send, why)
            return
        scope[GRANT_KEY] = grant
        await self.app(scope, receive, send)


async def _refuse(send: Send, why: str) -> None:
    body = (
        b'{"error":{"type":"unauthorized","message":"'
        + why.encode()
        + b' (send it as Authorization: Bearer <key> or api-key: <key>)"}}'
    )
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="nestor"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# Declared so that OpenAPI documents both ways of sending a key; the gate has already checked it.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key = APIKeyHeader(name="api-key", auto_error=False, description="the API key in an api-key header")

_ROLE_ATTR = "nestor_role"


def authorize(request: Request, role: Role, *, filtered: bool = False, listing: bool = False) -> Filter | None:
    """Check the request's key against `role`, and a scoped key against the collection the path names.

    Returns the scope's filter, which every read of the route must be ANDed with (None: no filter).
    `filtered`: the route applies that filter (else a filtered scope is refused). `listing`: the route
    names no collection and shows a scoped key only the collections in its scope (else such a route
    needs an unscoped key)."""
    grant: Grant | None = request.scope.get(GRANT_KEY)
    if grant is None:  # the gate did not run or found no key: fail closed
        raise Unauthorized("an API key is required")
    if grant.role < role:
        raise Forbidden(f"this operation needs the {role.name} role; the API key has {grant.role.name}")
    if grant.collections is None:
        return None
    name = request.path_params.get("name")
    if name is None:
        if listing:
            return None
        raise Forbidden("this operation needs an unscoped API key; this key is limited to some collections")
    scope = grant.collections.get(name)
    if scope is None:
        raise Forbidden(f"the API key has no access to collection {name!r}")
    if scope.access < role:
        raise Forbidden(
            f"this operation needs {role.name} access to collection {name!r}; the API key has {scope.access.name}"
        )
    if scope.filter is not None and not filtered:
        raise Forbidden(
            f"the API key's access to collection {name!r} is limited by a payload filter, "
            "which this operation cannot be held to"
        )
    return scope.filter


def request_grant(request: Request) -> Grant:
    """The grant the gate left for this request (Unauthorized when there is none: fail closed)."""
    grant: Grant | None = request.scope.get(GRANT_KEY)
    if grant is None:
        raise Unauthorized("an API key is required")
    return grant


def require(role: Role, *, filtered: bool = False, listing: bool = False) -> DependsParam:
    """A route dependency: the request's key must have at least `role` (else 403), and a scoped key
    access to the path's collection (see `authorize` for `filtered` and `listing`)."""

    async def check(request: Request, _b: Any = Security(_bearer), _k: Any = Security(_api_key)) -> None:
        authorize(request, role, filtered=filtered, listing=listing)

    setattr(check, _ROLE_ATTR, role)
    dep: DependsParam = Depends(check)
    return dep


def gate_only(endpoint: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """Marks a plain endpoint that authorises itself: the gate checks the key, and the endpoint calls
    `authorize(request, Role.read, ...)` for the collection (the role recorded here is `read`)."""
    setattr(endpoint, _ROLE_ATTR, Role.read)
    return endpoint


def route_role(route: object) -> Role | None:
    """The role a route declares (through `require`, or `gate_only` on a plain endpoint); None if none.

    `route` is a Starlette route or FastAPI's `RouteContext` (what `iter_route_contexts` yields)."""
    dependant = getattr(route, "dependant", None)
    if dependant is not None:
        roles = [getattr(d.call, _ROLE_ATTR, None) for d in dependant.dependencies]
        declared = [r for r in roles if r is not None]
        return max(declared) if declared else None
    return getattr(getattr(route, "endpoint", None), _ROLE_ATTR, None)


def _main(argv: list[str]) -> int:
    usage = "usage: python -m server.auth new ROLE | python -m server.auth hash KEY"
    if len(argv) == 2 and argv[0] == "new" and argv[1] in Role.__members__:
        key = "nst_" + secrets.token_urlsafe(32)
        sys.stdout.write(f"key (give it to the client; it is not stored): {key}\n")
        sys.stdout.write(f"entry for NESTOR_API_KEYS or the keys file:  {argv[1]}:{hash_key(key)}\n")
        sys.stdout.write(f'or, scoped (docs/security.md): {{"sha256": "{hash_key(key)}", "collections": {{...}}}}\n')
        return 0
    if len(argv) == 2 and argv[0] == "hash":
        sys.stdout.write(hash_key(argv[1]) + "\n")
        return 0
    sys.stderr.write(usage + "\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
