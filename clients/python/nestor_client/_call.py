"""A request the clients send, and the quoted paths of Nestor's resources (no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import quote

from ._response import Envelope

__all__ = ["Call", "_collection", "_flag", "_job", "_snapshot"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request to send, and how to turn its envelope into the method's return value."""

    method: str
    path: str
    parse: Callable[[Envelope], T]
    body: bytes | None = None
    params: Mapping[str, str] | None = None


def _collection(name: str) -> str:
    # Quote everything so a name can never reach another route ("a/b", "..").
    return "/collections/" + quote(name, safe="")


def _snapshot(name: str, snapshot: str) -> str:
    return f"{_collection(name)}/snapshots/{quote(snapshot, safe='')}"


def _job(job_id: str) -> str:
    return "/jobs/" + quote(job_id, safe="")


def _flag(value: bool) -> str:
    return "true" if value else "false"
