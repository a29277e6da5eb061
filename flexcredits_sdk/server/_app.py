"""The ASGI application: the wallet service's routes, health checks and dashboard."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.routing import Match

from .. import __version__
from .._export._openapi import OPENAPI_PATH, describe, operation_id, render
from .._wire import ErrorResponse
from ._budget_routes import router as budget_router
from ._config import ServerSettings, default_db
from ._dashboard import render_dashboard
from ._database import Tenant, WalletStore
from ._hold_routes import HoldSweeper
from ._hold_routes import router as hold_router
from ._metrics import CONTENT_TYPE_LATEST, ServiceMetrics
from ._plumbing import (
    BodyLimit,
    KeyCache,
    error_handlers,
    error_response,
    printable,
    tenant_of,
)
from ._queries import RecordQuery
from ._rate_card_routes import router as rate_card_router
from ._requests import StatusResponse
from ._routes import router
from ._webhooks import Deliverer

__all__ = ["app_from_env", "create_app", "shipped_openapi"]

logger = logging.getLogger("flexcredits_sdk.server")


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Serve the protocol's one document (`describe`), made once per application."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(app)
        return app.openapi_schema

    return openapi


def create_app(
    settings: ServerSettings | None = None, *, store: WalletStore | None = None
) -> FastAPI:
    """Return the wallet service's ASGI application.

    Args:
        settings: How the service runs; from the environment when omitted.
        store: The storage (for tests); opened from ``settings.db`` when omitted.
    """
    settings = settings or ServerSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if store is None and settings.db == default_db():
            Path(settings.db).parent.mkdir(parents=True, exist_ok=True)
        wallet = store or WalletStore(settings.db)
        wallet.migrate()
        deliverer = Deliverer(
            wallet.engine,
            interval_s=float(settings.webhook_interval_s),
            backoff_s=float(settings.webhook_backoff_s),
            allow_private=settings.allow_private_webhooks,
            on_attempt=lambda result: metrics.webhook_deliveries.labels(result).inc(),
        )
        sweeper = HoldSweeper(
            wallet.sweep_holds,
            interval_s=float(settings.hold_sweep_interval_s),
            on_expired=metrics.holds.labels("expired").inc,
        )
        app.state.store = wallet
        metrics.watch_balances(wallet.balances)
        deliverer.start()
        sweeper.start()
        logger.info("wallet service started", extra={"event": "startup", "db": wallet.dialect})
        try:
            yield
        finally:
            sweeper.stop()
            deliverer.stop()
            wallet.close()
            logger.info("wallet service stopped", extra={"event": "shutdown"})

    app = FastAPI(
        title="flexcredits wallet",
        version=__version__,
        summary="The Digital Wallet of flexcredits-sdk: balances, usage, grants and alerts.",
        lifespan=lifespan,
        exception_handlers=error_handlers,
        separate_input_output_schemas=False,
        generate_unique_id_function=operation_id,
    )
    metrics = ServiceMetrics(per_tenant=settings.metrics_tenant_label)
    app.state.settings = settings
    app.state.keys = KeyCache()
    app.state.metrics = metrics
    app.include_router(router)
    app.include_router(rate_card_router)
    app.include_router(budget_router)
    app.include_router(hold_router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.middleware("http")(_access_log)
    app.openapi = _openapi(app)  # type: ignore[method-assign]

    @app.get("/healthz", operation_id="health")
    def healthz() -> StatusResponse:
        """The process is up."""
        return StatusResponse(status="ok")

    @app.get(
        "/readyz",
        operation_id="ready",
        responses={
            200: {"model": StatusResponse, "description": "The database can be reached"},
            503: {"model": ErrorResponse, "description": "The database cannot be reached"},
        },
    )
    def readyz(request: Request) -> Response:
        """The process can reach its database."""
        try:
            request.app.state.store.ping()
        except Exception:
            logger.warning("database unreachable", exc_info=True, extra={"event": "readyz"})
            return error_response(503, "unavailable", "the database cannot be reached")
        return JSONResponse({"status": "ready"})

    @app.get(
        "/metrics",
        operation_id="metrics",
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "The Prometheus text exposition format",
                "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            }
        },
    )
    def prometheus_metrics() -> Response:
        """Prometheus metrics: requests, records, ingest latency, webhooks, balances."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/dashboard", operation_id="dashboard", response_class=HTMLResponse)
    def dashboard(
        request: Request,
        tenant: Annotated[Tenant, Depends(tenant_of)],
        bucket: Literal["hour", "day", "month"] = "day",
        tag: Annotated[str | None, Query(max_length=200)] = None,
    ) -> HTMLResponse:
        """A read-only page: balance, usage by environment and tag over time, budgets and
        holds with what they refused, alerts."""
        wallet: WalletStore = request.app.state.store
        tag_key = printable(tag, "tag") if tag else _first_tag(wallet, tenant)
        page = render_dashboard(
            tenant=tenant.name,
            balance=wallet.balance(tenant.id),
            by_environment=wallet.usage(tenant.id, ["environment"], bucket=bucket),
            by_tag=wallet.usage(tenant.id, [tag_key], bucket=bucket) if tag_key else [],
            tag_key=tag_key,
            budgets=wallet.budgets(tenant.id),
            alerts=wallet.alerts(tenant.id, 10),
            bucket=bucket,
            holds=wallet.holds(tenant.id),
            refusals=wallet.refusals(tenant.id),
        )
        return HTMLResponse(page)

    return app


def _first_tag(wallet: WalletStore, tenant: Tenant) -> str | None:
    latest = wallet.records(tenant.id, RecordQuery(limit=1, newest_first=True))
    return min(latest[0].tags) if latest and latest[0].tags else None


async def _access_log(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    start = time.perf_counter()
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    response = await call_next(request)
    response.headers["x-request-id"] = request_id
    metrics: ServiceMetrics = request.app.state.metrics
    metrics.requests.labels(request.method, _route(request), str(response.status_code)).inc()
    logger.info(
        "%s %s %s",
        request.method,
        request.url.path,
        response.status_code,
        extra={
            "event": "request",
            "method": request.method,
            "path": request.url.path,
            "status": response.status_code,
            "ms": round((time.perf_counter() - start) * 1000, 2),
            "tenant": getattr(request.state, "tenant", None),
            "request_id": request_id,
        },
    )
    return response


def _route(request: Request) -> str:
    """Return the template of the route a request went to (``unmatched`` for none)."""
    route = request.scope.get("route")
    if route is None:  # answered before routing (e.g. 413 for a body too large)
        for candidate in request.app.router.routes:
            if candidate.matches(request.scope)[0] is Match.FULL:
                route = candidate
                break
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def app_from_env() -> FastAPI:
    """Return the application configured from the environment (uvicorn's ``--factory``)."""
    return create_app(ServerSettings.from_env())


def shipped_openapi() -> str:
    """Return the text of ``flexcredits_sdk/openapi.json``: the document every service serves.

    The document does not depend on the service's settings.
    """
    return render(create_app(ServerSettings()).openapi())


if __name__ == "__main__":
    OPENAPI_PATH.write_text(shipped_openapi(), encoding="utf-8")
    print(f"wrote {OPENAPI_PATH}")
