"""API keys and roles.

A key is presented as `Authorization: Bearer <key>` or `api-key: <key>`. The server never holds a key
itself, only its SHA-256 (keys are long random tokens, so a plain unsalted hash is enough, as for
GitHub or Stripe tokens). Each hash maps to one role, and roles nest: `read` < `write` < `admin`.

Two layers, so that a request without a valid key is refused before its body is read:

- `AuthGate`, an ASGI middleware, authenticates every request except the public paths (liveness,
  readiness, the OpenAPI document and its pages, the dashboard page). No key or an unknown key is
  401. It leaves the key's role in the request scope.
- `require(role)`, a dependency on each route, authorises: a role below the route's is 403. The
  single-search fast path needs only `read`, which every valid key has, so the gate alone covers it.

`tests/api/test_auth.py` enumerates `app.routes` and fails for a route that declares no role.

With auth off (no keys configured, or `NESTOR_AUTH=off`) every request gets `admin`, and startup
logs a warning saying so. Make a key with `python -m server.auth new admin`.
"""

from __future__ import annotations

import enum
import hashlib
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

__all__ = [
    "PUBLIC_PATHS",
    "AuthGate",
    "Forbidden",
    "KeyRing",
    "Role",
    "Unauthorized",
    "gate_only",
    "hash_key",
    "require",
    "route_role",
]

SCOPE_KEY = "nestor.role"
# Holds no data: probes, the API description, and the dashboard page (its data calls carry a key).
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/dashboard", "/dashboard/"}
)
_HASH = re.compile(r"^[0-9a-f]{64}$")


class Role(enum.IntEnum):
    read = 1  # search, get, count, collection info, metrics
    write = 2  # plus upsert, delete, ingest jobs
    admin = 3  # plus create and delete collections, snapshots, dashboard actions


class Unauthorized(NestorError):
    status = 401
    type = "unauthorized"


class Forbidden(NestorError):
    status = 403
    type = "forbidden"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """SHA-256 of each key -> its role. `enabled` False means every request is `admin`."""

    def __init__(self, hashes: dict[str, Role], *, enabled: bool) -> None:
        self.hashes = hashes
        self.enabled = enabled

    @classmethod
    def parse(cls, entries: Iterable[str], *, mode: str = "auto") -> KeyRing:
        """From `role:sha256hex` entries (blank ones and `#` comments skipped). `mode`: auto, on or off."""
        hashes: dict[str, Role] = {}
        for raw in entries:
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
            hashes[digest] = Role[role_name]
        if mode == "on" and not hashes:
            raise ValueError("NESTOR_AUTH=on but no API keys are configured (NESTOR_API_KEYS or NESTOR_API_KEYS_FILE)")
        enabled = mode == "on" or (mode == "auto" and bool(hashes))
        return cls(hashes, enabled=enabled)

    @classmethod
    def from_settings(cls, keys: str, keys_file: Path | None, mode: str) -> KeyRing:
        entries = keys.replace(",", "\n").splitlines()
        if keys_file is not None:
            entries += keys_file.read_text().replace(",", "\n").splitlines()
        return cls.parse(entries, mode=mode)

    def role_of(self, key: str | None) -> Role | None:
        if not self.enabled:
            return Role.admin
        if not key:
            return None
        # A lookup by the key's digest: timing can at most reveal a digest prefix, which does not help
        # anyone guess a key.
        return self.hashes.get(hash_key(key))


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
        role = self.keyring.role_of(key)
        if role is None and scope["path"] not in PUBLIC_PATHS:
            why = "an API key is required" if key is None else "the API key is not valid"
            await _refuse(send, why)
            return
        scope[SCOPE_KEY] = role
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


def require(role: Role) -> DependsParam:
    """A route dependency: the request's key must have at least `role` (else 403)."""

    async def check(request: Request, _b: Any = Security(_bearer), _k: Any = Security(_api_key)) -> None:
        have: Role | None = request.scope.get(SCOPE_KEY)
        if have is None:  # the gate did not run or found no key: fail closed
            raise Unauthorized("an API key is required")
        if have < role:
            raise Forbidden(f"this operation needs the {role.name} role; the API key has {have.name}")

    setattr(check, _ROLE_ATTR, role)
    dep: DependsParam = Depends(check)
    return dep


def gate_only(endpoint: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """Marks a plain endpoint whose role the gate alone enforces (`read`: any valid key)."""
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
        return 0
    if len(argv) == 2 and argv[0] == "hash":
        sys.stdout.write(hash_key(argv[1]) + "\n")
        return 0
    sys.stderr.write(usage + "\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
