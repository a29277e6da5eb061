"""HTTP plumbing of the service: authentication, capped bodies and error answers.

Every error answer is an `ErrorResponse` (a code and a sentence); stack traces go to the logs,
never into an answer.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
import zlib
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._exceptions import ConfigurationError
from .._wire import ErrorDetail, ErrorResponse
from ._database import Tenant, WalletStore
from ._keys import digest, same_key

__all__ = [
    "ADMIN_KEY",
    "TENANT_KEY",
    "ApiError",
    "BodyLimit",
    "KeyCache",
    "admin_only",
    "error_handlers",
    "printable",
    "read_body",
    "store_of",
    "tenant_of",
    "TenantDep",
]

logger = logging.getLogger("flexcredits_sdk.server")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "unavailable",
}


class ApiError(HTTPException):
    """An error answer with a machine-readable code."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(status, message)
        self.code = code or _CODES.get(status, "error")


def printable(value: str, field: str) -> str:
    """Return `value`, a field or tag name from a request, if it is printable.

    Tag keys are printable (see `check_tags`), so a name that is not matches nothing.

    Raises:
        ApiError: 422 naming `field` and the value.
    """
    if not value.isprintable():
        raise ApiError(422, f"{field}: {value[:200]!r} must not contain control characters")
    return value


def error_response(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    """Return an `ErrorResponse` answer."""
    body = ErrorResponse(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers or None)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = getattr(exc, "code", None) or _CODES.get(exc.status_code, "error")
    headers = dict(exc.headers or {})
    return error_response(exc.status_code, code, str(exc.detail), **headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")


async def _configuration_error(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(422, "invalid_value", str(exc))


async def _data_error(_request: Request, exc: Exception) -> JSONResponse:
    logger.info("value refused by the database", extra={"event": "request.data_error"})
    return error_response(
        422, "invalid_value", "a value is out of range or has characters that cannot be stored"
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error(
        "unhandled error",
        exc_info=exc,
        extra={"event": "request.error", "path": request.url.path},
    )
    return error_response(500, "internal_error", "the service failed; see its logs")


#: Exception handlers for `FastAPI(exception_handlers=...)`.
error_handlers: dict[Any, Any] = {
    StarletteHTTPException: _http_error,
    RequestValidationError: _validation_error,
    ConfigurationError: _configuration_error,
    DataError: _data_error,
    Exception: _unexpected,
}


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = False
                if too_large:
                    response = error_response(413, "body_too_large", self._message())
                    await response(scope, receive, send)
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ApiError(413, self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"request bodies are limited to {self.max_bytes} bytes"


async def read_body(request: Request, max_bytes: int) -> bytes:
    """Return the request body, gunzipped when ``Content-Encoding: gzip``, within `max_bytes`.

    Raises:
        ApiError: 413 when the (decompressed) body is too large, 400 when it is not valid gzip,
            415 for another content encoding.
    """
    body = await request.body()
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding != "gzip":
        raise ApiError(415, f"content encoding {encoding!r} is not supported; use gzip")
    inflater = zlib.decompressobj(wbits=31)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error:
        raise ApiError(400, "the body is not valid gzip") from None
    if len(data) > max_bytes or inflater.unconsumed_tail:
        raise ApiError(413, f"request bodies are limited to {max_bytes} bytes, decompressed")
    if not inflater.eof:
        raise ApiError(400, "the gzip body is truncated")
    return data


def _key_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip() or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


#: The keys, as the OpenAPI document's security schemes. They only declare: `tenant_of` and
#: `admin_only` read the key themselves (a bearer token, or a basic-auth password).
TENANT_KEY = HTTPBearer(
    scheme_name="tenantKey",
    description="A tenant's API key: `Authorization: Bearer <key>`.",
    auto_error=False,
)
ADMIN_KEY = HTTPBearer(
    scheme_name="adminKey",
    description="The service's admin key (`FLEXCREDITS_ADMIN_KEY`): `Authorization: Bearer <key>`.",
    auto_error=False,
)
_Declared = HTTPAuthorizationCredentials | None


class KeyCache:
    """Tenants of recently seen keys, by key digest, for `ttl_s` seconds.

    Requests then authenticate without a database query or a thread hop; a revoked key stops
    working within `ttl_s` seconds in every process.
    """

    def __init__(self, ttl_s: float = 10.0, size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._entries: dict[str, tuple[Tenant, float]] = {}

    def get(self, key_digest: str) -> Tenant | None:
        entry = self._entries.get(key_digest)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, key_digest: str, tenant: Tenant) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key_digest] = (tenant, time.monotonic() + self.ttl_s)


async def tenant_of(
    request: Request, _declared: Annotated[_Declared, Depends(TENANT_KEY)]
) -> Tenant:
    """Return the tenant of the request's API key (bearer token, or basic-auth password).

    Raises:
        HTTPException: 401 when the key is missing, unknown or revoked.
    """
    key = _key_of(request)
    tenant = None
    if key:
        cache: KeyCache = request.app.state.keys
        key_digest = digest(key)
        tenant = cache.get(key_digest)
        if tenant is None:
            tenant = await run_in_threadpool(store_of(request).authenticate, key)
            if tenant is not None:
                cache.put(key_digest, tenant)
    if tenant is None:
        raise HTTPException(
            401,
            "a valid API key is required (Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": 'Basic realm="flexcredits wallet"'},
        )
    request.state.tenant = tenant.name
    return tenant


#: A route's tenant: the one whose API key the request carries.
TenantDep = Annotated[Tenant, Depends(tenant_of)]


def store_of(request: Request) -> WalletStore:
    """Return the wallet store of the service answering `request`."""
    store: WalletStore = request.app.state.store
    return store


def admin_only(request: Request, _declared: Annotated[_Declared, Depends(ADMIN_KEY)]) -> None:
    """Check that the request carries the admin key.

    Raises:
        ApiError: 403 when the service has no admin key or the request's key is not it.
    """
    admin_key: str | None = request.app.state.settings.admin_key
    key = _key_of(request)
    if admin_key is None:
        raise ApiError(403, "admin operations are disabled: the service has no admin key")
    if key is None or not same_key(key, admin_key):
        raise ApiError(403, "this operation needs the admin key")
