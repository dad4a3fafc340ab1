"""The bridge's ASGI app: the one route table, and the answers for paths and methods it does
not serve (404 and 405 in the failing family's error shape)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from http_bridge.access_log import AccessLog
from http_bridge.backend import TokenBackend
from http_bridge.context import BridgeContext
from http_bridge.cors import BrowserAccess, TenantOrigins, process_origins, tenant_origins
from http_bridge.errors import Problem
from http_bridge.metrics import HttpMetrics, metrics_endpoint
from http_bridge.responses import family_of, problem_response
from http_bridge.routes import (
    accounts,
    discovery,
    health,
    identity_providers,
    oauth,
    revocations,
    sessions,
    storefront,
)
from server.proxies import Networks, parse_networks
from server.settings import Settings

# Starlette tries the routes in this order, one regex each, and no two paths overlap: the paths
# called most (a validation or an introspection per storefront page, a token per visit) come
# first, which on GET validateauthtoken saved the seven matches that were about 5 % of its
# interpreter time (bench/results.md, "Profiles").
ROUTES = [
    Route("/customer/{tenant}/validateauthtoken", storefront.validate, methods=["GET"]),
    Route("/oauth/introspect", oauth.introspect, methods=["POST"]),
    Route("/oauth/token", oauth.token, methods=["POST"]),
    Route("/customerlogin/auth/anonymous/login", storefront.anonymous_login, methods=["GET"]),
    Route("/customerlogin/auth/anonymous/refresh", storefront.anonymous_refresh, methods=["GET"]),
    Route("/customer/{tenant}/refreshauthtoken", storefront.customer_refresh, methods=["GET"]),
    Route("/customer/{tenant}/login", storefront.customer_login, methods=["POST"]),
    Route("/oauth2/token", oauth.standard_token, methods=["POST"]),
    Route("/oauth/revoke", oauth.revoke, methods=["POST"]),
    Route("/oauth/revocations", revocations.watch, methods=["GET"]),
    Route("/customer/{tenant}/logout", storefront.logout, methods=["GET"]),
    Route(
        "/customer/{tenant}/exchangeauthtoken",
        identity_providers.exchange_auth_token,
        methods=["POST"],
    ),
    Route("/customer/{tenant}/socialLogin", identity_providers.social_login, methods=["POST"]),
    Route("/customer/{tenant}/me/sessions", sessions.list_sessions, methods=["GET"]),
    Route("/customer/{tenant}/me/sessions", sessions.end_sessions, methods=["DELETE"]),
    Route("/customer/{tenant}/me/sessions/{sessionId}", sessions.end_session, methods=["DELETE"]),
    Route("/customer/{tenant}/signup", accounts.sign_up, methods=["POST"]),
    Route(
        "/customer/{tenant}/signup/optin/refresh_token",
        accounts.resend_sign_up_link,
        methods=["POST"],
    ),
    Route("/customer/{tenant}/signup/optin/{token}", accounts.confirm_sign_up, methods=["GET"]),
    Route("/customer/{tenant}/password/change", accounts.change_password, methods=["POST"]),
    Route("/customer/{tenant}/password/reset", accounts.request_password_reset, methods=["POST"]),
    Route("/customer/{tenant}/password/reset/update", accounts.reset_password, methods=["POST"]),
    Route(
        "/customer/{tenant}/me/accounts/internal/email/change",
        accounts.request_email_change,
        methods=["POST"],
    ),
    Route(
        "/customer/{tenant}/me/accounts/internal/email/change/confirm",
        accounts.confirm_email_change,
        methods=["POST"],
    ),
    Route("/.well-known/jwks.json", discovery.jwks, methods=["GET"]),
    Route("/.well-known/oauth-authorization-server", discovery.metadata, methods=["GET"]),
    Route("/openapi.json", discovery.openapi, methods=["GET"]),
    Route("/healthz", health.healthz, methods=["GET"]),
    Route("/readyz", health.readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
]
ERROR_NAMES = {404: "not_found", 405: "method_not_allowed"}


def build_app(
    backend: TokenBackend,
    settings: Settings,
    *,
    extra_routes: Sequence[BaseRoute] = (),
    trusted_proxies: Networks | None = None,
) -> AccessLog:
    """The bridge over `backend`, wrapped in the masking access log, with request metrics and
    CORS (http_bridge/cors.py). `extra_routes` are served beside the bridge's own on the same
    stack (the benchmark's no-op ceiling; never used by `tokenservice serve` or `bridge`).
    `trusted_proxies`: TOKENSERVICE_TRUSTED_PROXIES as the core beside it parsed it (`serve`);
    parsed from `settings` when not given (the standalone bridge)."""
    tenants = tenant_origins(backend, settings)
    cors = Middleware(
        BrowserAccess,
        process_origins=process_origins(settings),
        tenants=tenants,
        max_age=settings.cors_max_age_seconds,
        routes=ROUTES,
    )
    app = Starlette(
        routes=[*ROUTES, *extra_routes],
        middleware=[Middleware(HttpMetrics), cors],
        exception_handlers={HTTPException: _http_error},
    )
    if trusted_proxies is None:
        trusted_proxies = parse_networks(settings.trusted_proxies)
    app.state.bridge = BridgeContext(backend, settings, trusted_proxies)
    app.state.tenant_origins = tenants
    return AccessLog(app)


def context_of(app: AccessLog) -> BridgeContext:
    context: BridgeContext = app.app.state.bridge  # type: ignore[attr-defined]
    return context


def tenant_origins_of(app: AccessLog) -> TenantOrigins:
    """The bridge's cache of tenants' allowed origins."""
    tenants: TenantOrigins = app.app.state.tenant_origins  # type: ignore[attr-defined]
    return tenants


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    headers = exc.headers or {}
    if status == 405:
        message = f"{request.method} is not allowed here; use {headers.get('Allow', '')}"
    elif status == 404:
        message = "no such endpoint"
    else:
        message = exc.detail
    problem = Problem(status, ERROR_NAMES.get(status, "invalid_request"), message)
    problem.headers.update({k: v for k, v in headers.items() if k.lower() == "allow"})
    return problem_response(problem, family_of(request.url.path))
