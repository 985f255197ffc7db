"""Request bodies in JSON or msgpack, and the `{"result", "time"}` envelope in either.

msgpack bodies (`Content-Type: application/msgpack`) are decoded here and handed to FastAPI as if
they were JSON, so one set of pydantic models and one OpenAPI document serve both encodings.
Responses are encoded directly with orjson or msgpack; FastAPI's generic encoder is far slower
on the search hot path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import msgpack
import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from index.errors import InvalidRequest

__all__ = ["MSGPACK", "NestorRoute", "body_schema", "envelope", "error_response", "read_model"]

MSGPACK = "application/msgpack"
M = TypeVar("M", bound=BaseModel)
_FLAG = "nestor.msgpack"


def _is_msgpack(content_type: str) -> bool:
    return content_type.startswith((MSGPACK, "application/x-msgpack"))


class _BodyRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            self._json = msgpack.unpackb(body, raw=False) if self.scope.get(_FLAG) else orjson.loads(body)
        return self._json


class NestorRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            scope = request.scope
            ctype = request.headers.get("content-type", "")
            if _is_msgpack(ctype):
                scope = dict(scope)
                scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-type"] + [
                    (b"content-type", b"application/json")
                ]
                scope[_FLAG] = True
            return await inner(_BodyRequest(scope, request.receive))

        return handler


async def read_model(request: Request, model: type[M]) -> M:
    """Decode and validate a body directly: the hot-path alternative to a FastAPI body parameter.

    FastAPI's generic body handling and dependency solving cost more than the search itself does.
    Errors take the same shape as FastAPI's own (400 for undecodable bytes, 422 for invalid fields).
    """
    raw = await request.body()
    try:
        is_msgpack = request.scope.get(_FLAG) or _is_msgpack(request.headers.get("content-type", ""))
        data = msgpack.unpackb(raw, raw=False) if is_msgpack else orjson.loads(raw)
    except (ValueError, msgpack.UnpackException) as exc:
        raise InvalidRequest(f"request body is not valid JSON or msgpack ({exc})") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` declaring a body read by `read_model`, in both encodings."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref}, MSGPACK: {"schema": ref}}}
    }


def wants_msgpack(request: Request) -> bool:
    return "msgpack" in request.headers.get("accept", "")


def envelope(request: Request, result: Any, started: float, status: int = 200, **extra: Any) -> Response:
    body = {"result": result, "time": time.perf_counter() - started, **extra}
    if wants_msgpack(request):
        return Response(msgpack.packb(body, use_bin_type=True), status_code=status, media_type=MSGPACK)
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


def error_response(request: Request, status: int, type_: str, message: str, details: Any = None) -> Response:
    err: dict[str, Any] = {"type": type_, "message": message}
    if details is not None:
        err["details"] = details
    if wants_msgpack(request):
        return Response(msgpack.packb({"error": err}, use_bin_type=True), status_code=status, media_type=MSGPACK)
    return Response(orjson.dumps({"error": err}, default=str), status_code=status, media_type="application/json")
