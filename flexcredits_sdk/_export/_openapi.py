"""The one OpenAPI 3.1 document of the wallet protocol, generated from the service's routes.

The wallet service serves it at ``/openapi.json`` and the package ships the same document as
``flexcredits_sdk/openapi.json``; `describe` makes both from the routes and the pydantic models
they validate with, so a route added with its models is described with no change here. What
FastAPI leaves out, this module adds from the operation FastAPI describes:

* a tenant's key (``tenantKey``, which a browser may send as a basic-auth password) means a
  401 answer; the admin key (``adminKey``) a 403; an operation with neither needs no key;
* every operation with parameters or a body may answer 422 (an `ErrorResponse`, not FastAPI's
  default), every body 413;
* the bodies a route reads itself (`IngestRequest`), and stable operation ids (`operation_id`);
* each operation's summary: the first paragraph of its route's docstring.

Regenerate the shipped file with ``make openapi``; a test checks that it is up to date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .._wire import API_VERSION, ErrorResponse, IngestRequest

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.routing import APIRoute

__all__ = ["OPENAPI_PATH", "REGENERATE", "describe", "operation_id", "render"]

#: Where the package ships the document.
OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.json"
#: The command that writes the shipped document.
REGENERATE = "make openapi  (or: python -m flexcredits_sdk.server._app)"

_REF = "#/components/schemas/{model}"
#: Bodies that routes read and validate themselves (fast paths), so FastAPI cannot see them.
_READ_BY_ROUTES: tuple[type[BaseModel], ...] = (IngestRequest,)

_TENANT_BASIC = {
    "tenantBasic": {
        "type": "http",
        "scheme": "basic",
        "description": (
            "A tenant's API key as the password of HTTP basic auth (any user name), for browsers."
        ),
    }
}

_DESCRIPTION = """\
The protocol between flexcredits-sdk and a wallet service, and the reference service's other
operations. This document is the truth of both: the service serves it at `/openapi.json` and the
package ships it as `flexcredits_sdk/openapi.json`.

JSON over HTTPS (plain HTTP to loopback); credits are JSON integers or decimal strings, never
floats; times are ISO 8601 with an offset. Every error answer is an `ErrorResponse`, except a 422
on `POST /v1/records`, which names each rejected record (`IngestResponse`)."""


def operation_id(route: APIRoute) -> str:
    """Return the operation id of a route that names none: its function's name in camelCase.

    The service passes this to FastAPI (``generate_unique_id_function``), so an id does not
    change with the route's path or method.
    """
    head, *rest = route.name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _answer(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}},
    }


def _error(description: str, **headers: str) -> dict[str, Any]:
    answer = _answer(ErrorResponse, description)
    if headers:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return answer


_UNAUTHORIZED = _error(
    "The API key is missing, unknown or revoked",
    **{"WWW-Authenticate": 'Basic realm="flexcredits wallet"'},
)
_FORBIDDEN = _error("This operation needs the admin key (or the service has none)")
_TOO_LARGE = _error("The body is larger than the service accepts (after gzip)")
_INVALID = _error("A parameter or the body is invalid; the message names the field and the value")


def _complete(operation: dict[str, Any]) -> None:
    """Add the security and error answers that FastAPI leaves out; summarise by the docstring."""
    if operation.get("description"):
        operation["summary"] = operation["description"].split("\n\n")[0].replace("\n", " ")
    responses: dict[str, Any] = operation.setdefault("responses", {})
    keys = {name for requirement in operation.get("security", []) for name in requirement}
    if "tenantKey" in keys:
        operation["security"] = [*operation["security"], {"tenantBasic": []}]
        responses.setdefault("401", _UNAUTHORIZED)
    if "adminKey" in keys:
        responses.setdefault("403", _FORBIDDEN)
    operation.setdefault("security", [])
    if "requestBody" in operation:
        responses.setdefault("413", _TOO_LARGE)
    validation = responses.get("422", {}).get("content", {}).get("application/json", {})
    if validation.get("schema") == {"$ref": _REF.format(model="HTTPValidationError")}:
        del responses["422"]  # FastAPI's default, which the service never sends
    if operation.get("parameters") or "requestBody" in operation:
        responses.setdefault("422", _INVALID)


def _drop_unreferenced(document: dict[str, Any], names: tuple[str, ...]) -> None:
    """Remove the schemas `names` that nothing refers to (a name may be referred to only by an
    earlier one, so the order matters)."""
    schemas = document["components"]["schemas"]
    for name in names:
        schema = schemas.pop(name, None)
        if schema is not None and _REF.format(model=name) in json.dumps(document):
            schemas[name] = schema


def describe(app: FastAPI) -> dict[str, Any]:
    """Return the OpenAPI document of `app`, a wallet service (`create_app`).

    Raises:
        ValueError: Two models have the same name and different schemas.
    """
    from fastapi.encoders import jsonable_encoder
    from fastapi.openapi.models import OpenAPI
    from fastapi.openapi.utils import get_openapi

    document = get_openapi(
        title="flexcredits wallet service",
        version=API_VERSION,
        openapi_version="3.1.0",
        summary="The Digital Wallet of flexcredits-sdk: balances, usage, grants and alerts.",
        description=_DESCRIPTION,
        routes=app.routes,
        separate_input_output_schemas=False,
    )
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    models = [(model, "validation") for model in (*_READ_BY_ROUTES, ErrorResponse)]
    _, defs = models_json_schema(models, ref_template=_REF)  # type: ignore[arg-type]
    for name, schema in defs.get("$defs", {}).items():
        schema = _schema(schema)
        if schemas.setdefault(name, schema) != schema:
            raise ValueError(f"two models named {name} have different schemas")
    for path in document["paths"].values():
        for operation in path.values():
            _complete(operation)
    _drop_unreferenced(document, ("HTTPValidationError", "ValidationError"))
    document["components"].setdefault("securitySchemes", {}).update(_TENANT_BASIC)
    written: dict[str, Any] = _integral(
        jsonable_encoder(OpenAPI(**document), by_alias=True, exclude_none=True)
    )
    return written


def _schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Return `schema` as FastAPI writes the schemas it makes itself (its `Schema` model)."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.openapi.models import Schema

    written: dict[str, Any] = jsonable_encoder(Schema(**schema), by_alias=True, exclude_none=True)
    return written


_NUMBERS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def _integral(node: Any) -> Any:
    """Write bounds that are whole numbers as integers (FastAPI's model makes them floats)."""
    if isinstance(node, dict):
        return {
            key: int(value)
            if key in _NUMBERS and isinstance(value, float) and value.is_integer()
            else _integral(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_integral(item) for item in node]
    return node


def render(document: dict[str, Any]) -> str:
    """Return `document` as the JSON text the package ships."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
