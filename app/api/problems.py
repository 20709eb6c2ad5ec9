"""RFC 9457 problem details: every error leaves the API as `application/problem+json` naming the field."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import BadRequest, SettleError

PROBLEM = "application/problem+json"


def _absent(schema: dict[str, Any]) -> None:
    """Left out of the answer rather than null: no `default: null` in the document."""
    schema.pop("default", None)


class FieldError(BaseModel):
    field: str = Field(description="the parameter or body field at fault, e.g. `chain` or `items[3].amount`")
    reason: str
    index: int | SkipJsonSchema[None] = Field(None, description="POST /v1/records: the item's position (-1: the "
                                                                  "whole batch)", json_schema_extra=_absent)


class ProblemDetails(BaseModel):
    """An RFC 9457 problem, served as `application/problem+json`."""

    type: str = Field(description="always `about:blank`: `title` and `status` say it all")
    title: str
    status: int = Field(description="the HTTP status")
    detail: str
    errors: list[FieldError] | SkipJsonSchema[None] = Field(None, description="the fields at fault, when known",
                                                            json_schema_extra=_absent)
    model_config = {"json_schema_extra": {"examples": [{
        "type": "about:blank", "title": "Bad request", "status": 400, "detail": "chain: unknown chain 'polygon'",
        "errors": [{"field": "chain", "reason": "unknown chain 'polygon' (configured: ['ethereum'])"}]}]}}


def problem_response(description: str, **extra: Any) -> dict[str, Any]:
    """An error response for the OpenAPI document: `description` and the problem schema."""
    return {"description": description, **extra,
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}}


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def install(app: FastAPI) -> None:
    @app.exception_handler(SettleError)
    async def _settle(_: Request, exc: SettleError) -> JSONResponse:
        from app.records import RecordsRejected

        extra: dict[str, Any] = {}
        if isinstance(exc, BadRequest):
            extra = {"errors": [{"field": exc.field, "reason": exc.reason}]}
        elif isinstance(exc, RecordsRejected):
            extra = {"errors": [{"index": e.index, "field": f"items[{e.index}].{e.field}" if e.index >= 0 else e.field,
                                 "reason": e.reason} for e in exc.errors]}
        reply = problem(exc.status_code, exc.title, str(exc), **extra)
        if exc.status_code == 401:
            reply.headers["WWW-Authenticate"] = 'Bearer realm="settle"'
        return reply

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return problem(422, "Invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))


def _field(loc: tuple) -> str:  # type: ignore[type-arg]
    """`("body", "items", 0)` -> `items.0`; the whole body or parameter set at fault -> `body` (or `query`...)."""
    where, *rest = loc or ("body",)
    if where not in ("body", "query", "path", "header", "cookie"):
        return ".".join(str(p) for p in loc)
    return ".".join(str(p) for p in rest) or str(where)
