"""The OpenAPI document, completed where FastAPI falls short: the problem schema every error response names, and
the nulls of the examples (an example of a required nullable field is wrong without its null)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_fields_from_routes
from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from app.api.problems import ProblemDetails

REF_TEMPLATE = "#/components/schemas/{model}"


def complete(app: FastAPI) -> None:
    """Make `app.openapi()` (and /openapi.json, /docs) serve the completed document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas = generate().setdefault("components", {}).setdefault("schemas", {})
            _restore_example_nulls(app, schemas)
            _add(schemas, ProblemDetails)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _add(schemas: dict[str, Any], model: Any) -> None:
    """The routes name `model` by reference under `application/problem+json`, a media type FastAPI's
    `responses={...: {"model": ...}}` cannot declare, so FastAPI does not list it."""
    schema = TypeAdapter(model).json_schema(ref_template=REF_TEMPLATE, mode="serialization")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema


def _restore_example_nulls(app: FastAPI, schemas: dict[str, Any]) -> None:
    """FastAPI dumps the document without its nulls, examples included (fastapi/fastapi#5559): put back the
    models' examples as pydantic gives them, under the same component names."""
    fields = get_fields_from_routes(list(app.routes))
    inputs = [(i, field.mode, TypeAdapter(field.field_info.annotation).core_schema) for i, field in enumerate(fields)]
    _, definitions = GenerateJsonSchema(ref_template=REF_TEMPLATE).generate_definitions(inputs)  # type: ignore[arg-type]
    for name, schema in definitions.items():
        if name in schemas and "examples" in schema:
            schemas[name]["examples"] = schema["examples"]
