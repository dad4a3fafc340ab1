"""CORS for browser storefronts: which origins' pages may call which endpoints from JavaScript,
and the headers that tell the browser so.

Starlette's CORSMiddleware writes the headers (the preflight answer, Access-Control-* and Vary
on every answer, errors included), but it admits one fixed list of origins for the whole app.
Here the list depends on the request: a storefront endpoint admits its tenant's own origins (the
tenant of the path `/customer/{tenant}/...`, or the `tenant` query parameter of
`/customerlogin/auth/anonymous/*`) beside TOKENSERVICE_CORS_ALLOWED_ORIGINS; the other
browser-facing endpoints (`/oauth/*`, `/.well-known/*`) admit that list only; the rest (health,
metrics, the OpenAPI document) never answer CORS. So `BrowserAccess`, a small gate in front,
decides per request whether the Origin is allowed, and only then hands the request to a
CORSMiddleware that admits whatever origin it is given. An origin not allowed never reaches it:
its answers carry no Access-Control-* header at all (Starlette's own refusal of a preflight
still sends Allow-Methods and Max-Age), so the browser keeps the page from reading them, and
its preflight is a 403 in the endpoint family's error shape.

A tenant's origins come from the core's public GetAllowedOrigins RPC, through the backend (a
standalone bridge has no database and no admin rights), and `TenantOrigins` keeps them for
TOKENSERVICE_CORS_TENANT_CACHE_SECONDS in an LRU of at most TOKENSERVICE_CORS_TENANT_CACHE_SIZE
tenants: a preflight costs no store read while its entry is fresh, concurrent misses for one
tenant share one call, and made-up tenant names evict one another instead of growing memory
(they are cached too, as having no origins). When the core cannot answer, the last known origins
stand in (so that a 503 still reaches the page that may read it); without them, the
process-wide list alone.

The answer names the one origin allowed, never `*`, and never sends
Access-Control-Allow-Credentials: storefronts authorise with the Authorization header, which
needs no credentials mode, and the service sets no cookies.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import parse_qsl

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from http_bridge.backend import RpcFailure, TokenBackend
from http_bridge.errors import Problem
from http_bridge.responses import family_of, problem_response
from server import origins
from server.errors import InvalidRequest
from server.settings import ConfigError, Settings
from server.validation import TENANT_PATTERN
from tokenservice.v1 import token_service_pb2 as pb

log = logging.getLogger("tokenservice.http")
ALLOWED_METHODS = ("GET", "POST", "DELETE")
# Beside the CORS-safelisted ones (Accept, Content-Type, ...), which Starlette always allows.
# session-id: the reference's optional header of socialLogin (read by no route here).
ALLOWED_HEADERS = ("Authorization", "Content-Type", "session-id")
# What a page must read of an error: when to retry, and which bearer token was refused.
EXPOSED_HEADERS = ("Retry-After", "WWW-Authenticate")
ANY_ORIGIN_GIVEN = r".+"  # BrowserAccess has already decided that the origin is allowed
REFUSED = "this origin may not call this endpoint from a browser (CORS)"
# Path prefixes of the browser-facing endpoints, and where each finds its tenant.
TENANT_IN_PATH = "/customer/"
TENANT_IN_QUERY = "/customerlogin/auth/anonymous/"
NO_TENANT = ("/oauth/", "/oauth2/", "/.well-known/")
TENANT_PARAMETER = "tenant"
MAX_QUERY_FIELDS = 64

Fetch = Callable[[str], Awaitable[Sequence[str]]]


class TenantOrigins:
    """Tenants' allowed origins by tenant name: at most `capacity` entries, each fresh for
    `max_age` seconds, least recently used out first."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        capacity: int,
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.max_age = max_age
        self._fetch = fetch
        self.clock = clock
        self._entries: collections.OrderedDict[str, tuple[frozenset[str], float]] = (
            collections.OrderedDict()
        )
        self._loading: dict[str, asyncio.Task[frozenset[str] | None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def of(self, tenant: str) -> frozenset[str]:
        """The tenant's origins: cached while fresh, else asked for (one call at a time per
        tenant); stale or none when the core cannot answer."""
        entry = self._entries.get(tenant)
        if entry is not None and entry[1] > self.clock():
            self._entries.move_to_end(tenant)
            return entry[0]
        task = self._loading.get(tenant)
        if task is None:
            task = asyncio.ensure_future(self._load(tenant))
            self._loading[tenant] = task
            task.add_done_callback(lambda done: self._loaded(tenant, done))
        loaded = await asyncio.shield(task)
        if loaded is not None:
            return loaded
        return entry[0] if entry is not None else frozenset()

    async def _load(self, tenant: str) -> frozenset[str] | None:
        try:
            found = frozenset(await self._fetch(tenant))
        except RpcFailure as failure:
            log.debug("allowed origins of a tenant unavailable: %s", failure.code.name)
            return None
        self._put(tenant, found)
        return found

    def _loaded(self, tenant: str, task: asyncio.Task[frozenset[str] | None]) -> None:
        if self._loading.get(tenant) is task:
            del self._loading[tenant]

    def _put(self, tenant: str, found: frozenset[str]) -> None:
        if self.capacity <= 0:
            return
        self._entries[tenant] = (found, self.clock() + self.max_age)
        self._entries.move_to_end(tenant)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)


def backend_fetch(backend: TokenBackend) -> Fetch:
    async def fetch(tenant: str) -> Sequence[str]:
        answer = await backend.get_allowed_origins(pb.GetAllowedOriginsRequest(tenant=tenant))
        return tuple(answer.allowed_origins)

    return fetch


class BrowserAccess:
    """The gate: CORS headers for allowed origins on browser-facing endpoints, none otherwise.
    `routes` only name a preflight's route for the request metrics."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        process_origins: frozenset[str],
        tenants: TenantOrigins,
        max_age: int,
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        self.app = app
        self.process_origins = process_origins
        self.tenants = tenants
        self.routes = routes
        self.cors = CORSMiddleware(
            app,
            allow_origin_regex=ANY_ORIGIN_GIVEN,
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=max_age,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not browser_facing(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if preflight:
            self._name_route(scope)
        if origin is not None and origin in await self.allowed(scope):
            await self.cors(scope, receive, send)
            return
        send = varies_by_origin(send)
        if origin is not None and preflight:
            problem = Problem(403, "access_denied", REFUSED)
            await problem_response(problem, family_of(scope["path"]))(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def allowed(self, scope: Scope) -> frozenset[str]:
        tenant = tenant_of(scope)
        if tenant is None:
            return self.process_origins
        return self.process_origins | await self.tenants.of(tenant)

    def _name_route(self, scope: Scope) -> None:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                scope["route"] = route
                return


def browser_facing(path: str) -> bool:
    return path.startswith((TENANT_IN_PATH, TENANT_IN_QUERY, *NO_TENANT))


def tenant_of(scope: Scope) -> str | None:
    """The well-formed tenant name the request names, if any: of the path on
    /customer/{tenant}/..., of the one `tenant` query parameter on the anonymous endpoints."""
    path: str = scope["path"]
    if path.startswith(TENANT_IN_PATH):
        candidate = path.split("/")[2]
    elif path.startswith(TENANT_IN_QUERY):
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
        except ValueError:
            return None
        named = [value for name, value in pairs if name == TENANT_PARAMETER]
        if len(named) != 1:
            return None
        candidate = named[0]
    else:
        return None
    return candidate if TENANT_PATTERN.fullmatch(candidate) else None


def varies_by_origin(send: Send) -> Send:
    """`send` with `Vary: Origin` added: the answer of a browser-facing endpoint depends on the
    Origin, so no cache may hand one origin's answer (or a plain one) to another."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])
        await send(message)

    return sending


def process_origins(settings: Settings) -> frozenset[str]:
    """TOKENSERVICE_CORS_ALLOWED_ORIGINS, checked with the other CORS settings: refused at start
    when malformed, with what an origin must look like."""
    if settings.cors_max_age_seconds < 0:
        raise ConfigError("TOKENSERVICE_CORS_MAX_AGE_SECONDS must be 0 or more")
    if settings.cors_tenant_cache_seconds < 0 or settings.cors_tenant_cache_size < 0:
        raise ConfigError(
            "TOKENSERVICE_CORS_TENANT_CACHE_SECONDS and TOKENSERVICE_CORS_TENANT_CACHE_SIZE must "
            "be 0 or more"
        )
    try:
        listed = origins.origin_list(
            settings.cors_allowed_origins, "TOKENSERVICE_CORS_ALLOWED_ORIGINS"
        )
    except InvalidRequest as refused:  # the admin API's refusal of the same list
        raise ConfigError(refused.description) from None
    return frozenset(listed)


def tenant_origins(backend: TokenBackend, settings: Settings) -> TenantOrigins:
    return TenantOrigins(
        backend_fetch(backend),
        capacity=settings.cors_tenant_cache_size,
        max_age=settings.cors_tenant_cache_seconds,
    )
