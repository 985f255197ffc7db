"""One place that turns every exception into the error envelope with the right status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from encoders import EncoderError
from index.errors import NestorError
from server.wire import error_response

__all__ = ["install_error_handlers"]

log = logging.getLogger("nestor.server")

_HTTP_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def install_error_handlers(app: FastAPI) -> None:
    async def on_domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NestorError)
        return error_response(request, exc.status, exc.type, exc.message)

    async def on_encoder(request: Request, exc: Exception) -> Response:
        # The encoder layer is independent of the engine, so its errors are not NestorErrors; same shape.
        assert isinstance(exc, EncoderError)
        if exc.status >= 500:
            log.error("encoder error on %s %s: %s", request.method, request.url.path, exc.message)
        return error_response(request, exc.status, exc.type, exc.message)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(
                request,
                400,
                "bad_request",
                "request body is not valid JSON (note: NaN and Infinity are not JSON)",
            )
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
        return error_response(request, 422, "validation_error", message, details)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(request, exc.status_code, _HTTP_TYPES.get(exc.status_code, "http_error"), str(exc.detail))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal", "internal server error")

    app.add_exception_handler(NestorError, on_domain)
    app.add_exception_handler(EncoderError, on_encoder)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
