"""The OpenAPI document is complete: /docs renders it; every operation is described, has a success response with
a real schema and an example, declares its errors as problem details; every request body has an example; and
every example in the document validates against its own schema. (Schemathesis checks the real answers against
the same document: tests/e2e/test_schemathesis.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest

from app.api.main import create_app
from app.settings import Settings

METHODS = ("get", "post", "put", "patch", "delete")
REF = "#/components/schemas/"


@pytest.fixture
async def client(tmp_path: Path) -> Any:
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/settle.db", data_dir=tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    reply = await client.get("/openapi.json")
    assert reply.status_code == 200
    return reply.json()  # type: ignore[no-any-return]


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield f"{method.upper()} {path}", item[method]


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].removeprefix(REF)]
    return schema


def _has_example(doc: dict[str, Any], schema: dict[str, Any], seen: frozenset[str] = frozenset()) -> bool:
    """An example on the schema, or (for a list) on its items, following references."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(REF)
        return name not in seen and _has_example(doc, doc["components"]["schemas"][name], seen | {name})
    if "example" in schema or schema.get("examples"):
        return True
    if "oneOf" in schema:
        return all(_has_example(doc, s, seen) for s in schema["oneOf"])
    return schema.get("type") == "array" and _has_example(doc, schema.get("items", {}), seen)


def _is_described(doc: dict[str, Any], schema: dict[str, Any]) -> bool:
    """Not a bare object: named properties (or a list of such, or one of several such: an NDJSON stream's lines)."""
    schema = _resolve(doc, schema)
    if "oneOf" in schema:
        return all(_is_described(doc, s) for s in schema["oneOf"])
    if schema.get("type") == "array":
        return _is_described(doc, schema.get("items", {}))
    return bool(schema.get("properties"))


async def test_docs_render_the_document(client: httpx.AsyncClient) -> None:
    reply = await client.get("/docs")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in reply.text and "swagger-ui" in reply.text.lower()


def test_every_operation_is_described_with_a_success_schema_and_an_example(document: dict[str, Any]) -> None:
    gaps = []
    for name, op in _operations(document):
        if not op.get("description"):
            gaps.append(f"{name}: no description")
        ok = [code for code in op["responses"] if code.startswith("2")]
        if not ok:
            gaps.append(f"{name}: no success response")
        for code in ok:
            content = op["responses"][code].get("content", {})
            schema = (content.get("application/json") or content.get("application/x-ndjson") or {}).get("schema")
            if schema is None or not _is_described(document, schema):
                gaps.append(f"{name} {code}: no schema, or a bare object")
            elif not _has_example(document, schema):
                gaps.append(f"{name} {code}: no example")
        body = op.get("requestBody")
        if body is not None:
            media = body["content"]["application/json"]
            if not ("example" in media or "examples" in media or _has_example(document, media["schema"])):
                gaps.append(f"{name}: request body without an example")
    assert not gaps, "\n".join(gaps)


def test_errors_are_declared_as_problem_details(document: dict[str, Any]) -> None:
    gaps = []
    for name, op in _operations(document):
        for code, response in op["responses"].items():
            if code.startswith(("4", "5")) and code != "503":
                schema = response.get("content", {}).get("application/problem+json", {}).get("schema")
                if schema != {"$ref": f"{REF}ProblemDetails"}:
                    gaps.append(f"{name} {code}: not a problem")
        if name != "GET /v1/health":
            gaps += [f"{name}: {code} undeclared" for code in ("401", "403", "422") if code not in op["responses"]]
    assert not gaps, "\n".join(gaps)
    assert "404" in document["paths"]["/v1/breaks/{break_id}"]["get"]["responses"]
    assert "409" in document["paths"]["/v1/wallets"]["post"]["responses"]
    assert "413" in document["paths"]["/v1/records"]["post"]["responses"]


def _examples(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example) for every example in the document: a schema's `examples` list, and a media
    type's `example` or `examples` map against its schema."""
    if isinstance(node, dict):
        if isinstance(node.get("examples"), list) and "examples" not in node.get("properties", {}):
            schema = {k: v for k, v in node.items() if k != "examples"}
            yield from ((f"{where} examples[{i}]", schema, e) for i, e in enumerate(node["examples"]))
        if "schema" in node:
            if "example" in node:
                yield f"{where} example", node["schema"], node["example"]
            if isinstance(node.get("examples"), dict):
                yield from ((f"{where} examples.{k}", node["schema"], e["value"])
                            for k, e in node["examples"].items() if "value" in e)
        for key, value in node.items():
            yield from _examples(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _examples(value, f"{where}/{i}")


def test_every_example_validates_against_its_schema(document: dict[str, Any]) -> None:
    found = list(_examples(document))
    assert len(found) > 40
    wrong = []
    for where, schema, example in found:
        validator = jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]},
                                                        validate_formats=True)
        wrong += [f"{where}: {error.message}" for error in validator.iter_errors(example)]
    assert not wrong, "\n".join(wrong)
