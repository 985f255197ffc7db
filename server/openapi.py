"""The OpenAPI document as the server really answers: every body inside the envelope.

Routes declare the `result` they return (`responses={200: {"model": CollectionInfo}}`), because that
is what the client parses. Responses are built by `server.wire.envelope`, though, not by FastAPI, so
the generated document would say a bare `CollectionInfo` comes back. This rewrites each JSON success
schema into `{"result": <schema>, "time": number, "strategy"?}` and every error (FastAPI's own 422
included) into `{"error": {"type", "message", "details"?}}`. The fuzz tests
(`tests/fuzz/`) validate responses against this document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from nestor_client.models import CollectionSummary, JobInfo, OptimizerStatus

__all__ = ["CollectionList", "JobList", "OptimizeDone", "OptimizeStarted", "install_openapi"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}, "details": {}},
        }
    },
}
_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_MARK = "x-nestor-envelopes"


class CollectionList(BaseModel):
    collections: list[CollectionSummary]


class JobList(BaseModel):
    jobs: list[JobInfo]


class OptimizeStarted(BaseModel):
    status: str  # acknowledged
    started: bool  # false: a compaction was already running


class OptimizeDone(OptimizerStatus):
    status: str  # completed (with ?wait=true), then the optimizer's status
    started: bool


def _envelope(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["result", "time"],
        "properties": {"result": result, "time": {"type": "number"}, "strategy": {}},
    }


def wrap_envelopes(doc: dict[str, Any]) -> dict[str, Any]:
    doc.setdefault("components", {}).setdefault("schemas", {})["ErrorResponse"] = _ERROR
    doc["components"]["schemas"].pop("HTTPValidationError", None)
    doc["components"]["schemas"].pop("ValidationError", None)
    for ops in doc.get("paths", {}).values():
        for op in ops.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            for status, resp in op["responses"].items():
                content = resp.get("content", {})
                if status.startswith("2"):
                    js = content.get("application/json")
                    if js is not None:
                        js["schema"] = _envelope(js.get("schema", {}))
                else:
                    resp["content"] = {"application/json": {"schema": _ERROR_REF}}
            op["responses"].setdefault("default", {"description": "an error", "content": {}})
            op["responses"]["default"]["content"] = {"application/json": {"schema": _ERROR_REF}}
    doc[_MARK] = True
    return doc


def install_openapi(app: FastAPI) -> None:
    original: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        doc = original()  # cached by FastAPI until the routes change
        return doc if doc.get(_MARK) else wrap_envelopes(doc)

    app.openapi = openapi  # type: ignore[method-assign]
