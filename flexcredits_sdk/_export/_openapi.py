"""The wire protocol as an OpenAPI 3.1 document, generated from the models in `_wire`.

The package ships the result as ``flexcredits_sdk/openapi.json``; a test checks that it equals
what `openapi()` generates. Regenerate it with ``python -m flexcredits_sdk._export._openapi``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import _wire
from .._models import Balance, GrantInfo

__all__ = ["OPENAPI_PATH", "openapi", "render"]

#: Where the package ships the document.
OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.json"

_REF = "#/components/schemas/{model}"
_MODELS: list[type[BaseModel]] = [
    _wire.IngestRequest,
    _wire.IngestResponse,
    _wire.RecordResult,
    Balance,
    _wire.UsageResponse,
    _wire.RecordsResponse,
    _wire.GrantsResponse,
    _wire.GrantRequest,
    GrantInfo,
    _wire.ErrorResponse,
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _answer(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "Malformed request",
        401: "Missing or wrong API key",
        403: "The key may not do this",
        413: "Body too large",
        429: "Too many requests; see Retry-After",
        503: "Unavailable; see Retry-After",
    }
    return {str(status): _answer(_wire.ErrorResponse, text[status]) for status in statuses}


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    params = []
    for name, prop in schema["properties"].items():
        is_list = prop.get("type") == "array"
        params.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": prop,
                **({"style": "form", "explode": True} if is_list else {}),
            }
        )
    return params


def openapi() -> dict[str, Any]:
    """Return the OpenAPI document of the wire protocol."""
    _, defs = models_json_schema([(model, "validation") for model in _MODELS], ref_template=_REF)
    common = _errors(401, 429, 503)
    ingest = {
        "summary": "Ingest a batch of usage records",
        "description": (_wire.__doc__ or "").split("\n\n", 2)[2].strip(),
        "operationId": "ingestRecords",
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 200},
                "description": "The batch id; each record's id is its own idempotency key.",
            },
            {
                "name": "Content-Encoding",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "enum": ["gzip", "identity"]},
            },
            {
                "name": "Prefer",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": (
                    "`return=minimal` (RFC 7240): list only the records not settled; the answer "
                    "then carries `Preference-Applied: return=minimal`."
                ),
            },
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(_wire.IngestRequest)}},
        },
        "responses": {
            "200": _answer(_wire.IngestResponse, "Every record accepted or a duplicate"),
            "422": _answer(
                _wire.IngestResponse,
                "Some records are invalid (rejected, with reasons); nothing was booked",
            ),
            **_errors(400, 413),
            **common,
        },
    }
    paths = {
        f"/{_wire.API_VERSION}/records": {
            "post": ingest,
            "get": {
                "summary": "Booked records, oldest first",
                "operationId": "listRecords",
                "parameters": _query(_wire.RecordsQuery),
                "responses": {"200": _answer(_wire.RecordsResponse, "Records"), **common},
            },
        },
        f"/{_wire.API_VERSION}/balance": {
            "get": {
                "summary": "The current balance",
                "operationId": "getBalance",
                "responses": {"200": _answer(Balance, "The balance"), **common},
            }
        },
        f"/{_wire.API_VERSION}/usage": {
            "get": {
                "summary": "Usage grouped by record fields, tags and time buckets",
                "operationId": "getUsage",
                "parameters": _query(_wire.UsageQuery),
                "responses": {"200": _answer(_wire.UsageResponse, "Rows"), **common},
            }
        },
        f"/{_wire.API_VERSION}/grants": {
            "get": {
                "summary": "Every grant with what is left of it",
                "operationId": "listGrants",
                "responses": {"200": _answer(_wire.GrantsResponse, "Grants"), **common},
            },
            "post": {
                "summary": "Add credits (admin key)",
                "operationId": "addGrant",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(_wire.GrantRequest)}},
                },
                "responses": {
                    "200": _answer(GrantInfo, "The new grant"),
                    **_errors(400, 403),
                    **common,
                },
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "flexcredits wallet service",
            "version": _wire.API_VERSION,
            "description": "The protocol between flexcredits-sdk and a wallet service.",
        },
        "paths": paths,
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def render() -> str:
    """Return the document as the JSON text the package ships."""
    return json.dumps(openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OPENAPI_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {OPENAPI_PATH}")
