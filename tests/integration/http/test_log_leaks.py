"""No token, client secret or password reaches a log record, whatever route a client calls and
however it sends them (form or JSON body, HTTP Basic, query strings, Authorization headers), on
success and on every kind of failure; and none comes back in an error response body.

Every logger the service uses is captured at DEBUG (the store's SQL and its driver included).
The access log must have written one line per request, with the secret-bearing query values
shown as `***`, so the test fails if logging is off rather than passing vacuously.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from http_bridge.access_log import masked_authorization, masked_target
from tests.integration.http.conftest import Bridge

ACCESS_LOGGER = "tokenservice.http.access"
UVICORN_ACCESS_LOGGER = "uvicorn.access"
# Every logger family the service (or what it runs on) writes to.
SERVICE_LOGGERS = (
    "tokenservice",
    "http_bridge",
    "server",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "starlette",
    "grpc",
    "sqlalchemy",
    "sqlalchemy.engine",
    "sqlalchemy.pool",
    "aiosqlite",
    "alembic",
    "asyncio",
)
# The test's own HTTP client logs the URLs it requests; it is not the service.
CLIENT_LOGGERS = frozenset({"httpx", "httpcore"})
SAFE_QUERY_NAMES = frozenset(
    {
        "tenant",
        "client_id",
        "currency",
        "siteCode",
        "language",
        "targetLocation",
        "legalEntityId",
        "token_type_hint",
    }
)
SECRET_QUERY_NAMES = frozenset(
    {
        "refresh_token",
        "anonymous_token",
        "refreshToken",
        "accessToken",
        "access_token",
        "token",
        "client_secret",
    }
)
Query = list[tuple[str, str]]


@dataclasses.dataclass
class Sent:
    """A request and the access-log line it must produce."""

    method: str
    path: str
    query: Query
    status: int
    logged_auth: str

    def log_fragment(self, secrets: set[str]) -> str:
        target = expected_target(self.path, self.query, secrets)
        return f'"{self.method} {target}" {self.status} auth="{self.logged_auth}"'


def expected_target(path: str, query: Query, secrets: set[str]) -> str:
    """What the access log may show, by the documented rule (written out independently): the
    values of the safe names unless they are one of the run's secrets (every value sent in them
    here is either what a storefront sends or a secret)."""
    if not query:
        return path
    shown = []
    for name, value in query:
        if name in SAFE_QUERY_NAMES:
            shown.append(f"{name}={'***' if value in secrets else value}")
        elif name in SECRET_QUERY_NAMES:
            shown.append(f"{name}=***")
        else:
            shown.append("***=***")
    return f"{path}?{'&'.join(shown)}"


def basic_header(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


class Exercise:
    """Sends requests through the bridge, remembering every secret involved, what the access log
    must say about each request, and every error body."""

    def __init__(self, bridge: Bridge) -> None:
        self.http = bridge.http
        self.secrets: set[str] = set()
        self.sent: list[Sent] = []
        self.error_bodies: list[tuple[str, str]] = []

    def secret(self, *values: str) -> None:
        for value in values:
            assert value, "an empty secret would match everything"
            self.secrets.add(value)

    def tokens_of(self, body: dict[str, Any]) -> None:
        for name in ("access_token", "refresh_token", "saas_token"):
            if body.get(name):
                self.secret(body[name])

    async def send(
        self,
        method: str,
        path: str,
        status: int | None,
        *,
        query: Query | None = None,
        headers: dict[str, str] | None = None,
        **content: Any,
    ) -> httpx.Response:
        query = query or []
        response = await self.http.request(
            method, path, params=tuple(query), headers=headers, **content
        )
        where = f"{method} {path}"
        if status is None:  # any answer but a server error
            status = response.status_code
            assert status < 500, f"{where}: {status} {response.text}"
        assert response.status_code == status, f"{where}: {response.status_code} {response.text}"
        authorization = (headers or {}).get("Authorization")
        logged_auth = "-"
        if authorization is not None:
            logged_auth = f"{authorization.split(' ', 1)[0]} ***"
        self.sent.append(Sent(method, path, query, status, logged_auth))
        if status >= 400:
            self.error_bodies.append((where, response.text))
        if response.headers.get("content-type", "").startswith("application/json"):
            body = response.json()
            if isinstance(body, dict):
                self.tokens_of(body)
        return response

    def variants(self) -> Iterator[tuple[str, str]]:
        """Each secret as it was sent and as a log might encode it."""
        for value in self.secrets:
            for form in {value, quote(value, safe=""), quote_plus(value)}:
                yield value, form


def capture_service_logs(caplog: pytest.LogCaptureFixture) -> None:
    """DEBUG on the root and on every service logger (SQLAlchemy, for one, sets its own loggers
    to WARNING). pytest attaches caplog's handler to the root and to every logger that does not
    propagate."""
    caplog.set_level(logging.DEBUG)
    families = {name.split(".")[0] for name in SERVICE_LOGGERS}
    names = set(SERVICE_LOGGERS)
    names.update(n for n in logging.root.manager.loggerDict if n.split(".")[0] in families)
    for name in sorted(names):
        caplog.set_level(logging.DEBUG, logger=name)


@contextlib.contextmanager
def uvicorn_access_log_as_deployed() -> Iterator[None]:
    """uvicorn's own access log (the raw request line, query string included) as the bridge
    leaves it: off. The bridge starts uvicorn with `access_log=False`, which empties the
    `uvicorn.access` logger and stops it propagating; uvicorn then writes its line only if that
    logger has a handler. pytest attaches its capture handlers to every non-propagating logger,
    which switches uvicorn's line back on in tests only: take them off for the test. (That
    suppression rests on the logger staying handler-less is reported, and tested, below.)"""
    logger = logging.getLogger(UVICORN_ACCESS_LOGGER)
    assert not logger.propagate, "uvicorn's own access log is not turned off"
    attached = list(logger.handlers)
    for handler in attached:
        logger.removeHandler(handler)
    try:
        yield
    finally:
        for handler in attached:
            logger.addHandler(handler)


def texts_of(record: logging.LogRecord) -> Iterator[str]:
    """Everything of a record a handler could write."""
    yield record.getMessage()
    yield str(record.msg)
    args = record.args
    if isinstance(args, dict):
        args = tuple(args.values())
    for arg in args or ():
        yield str(arg)
        yield repr(arg)
    if record.exc_info:
        yield logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        yield record.exc_text
    if record.stack_info:
        yield record.stack_info


async def exercise_every_route(bridge: Bridge, run: Exercise) -> None:
    shop = await bridge.harness.shop("leaks")
    tenant, storefront, service = shop.tenant, shop.storefront_id, shop.service_id
    wrong_secret = secrets.token_urlsafe(32)
    wrong_password = "wrong " + secrets.token_urlsafe(12)
    unknown_token = secrets.token_urlsafe(32)
    good_basic = basic_header(service, shop.service_secret)
    wrong_basic = basic_header(service, wrong_secret)
    run.secret(shop.service_secret, shop.password, wrong_secret, wrong_password, unknown_token)
    run.secret(good_basic.split()[1], wrong_basic.split()[1])
    form = {"grant_type": "client_credentials", "client_id": service}

    # --- discovery and health ---------------------------------------------------------------
    for path in (
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    ):
        await run.send("GET", path, 200)

    # --- POST /oauth/token ------------------------------------------------------------------
    await run.send("POST", "/oauth/token", 200, data={**form, "client_secret": shop.service_secret})
    await run.send("POST", "/oauth/token", 200, json={**form, "client_secret": shop.service_secret})
    await run.send(
        "POST",
        "/oauth/token",
        200,
        headers={"Authorization": good_basic},
        data={"grant_type": "client_credentials", "scope": "catalog.read"},
    )
    await run.send("POST", "/oauth/token", 401, data={**form, "client_secret": wrong_secret})
    await run.send("POST", "/oauth/token", 401, json={**form, "client_secret": wrong_secret})
    await run.send(
        "POST",
        "/oauth/token",
        401,
        headers={"Authorization": wrong_basic},
        data={"grant_type": "client_credentials"},
    )
    await run.send(
        "POST",
        "/oauth/token",
        401,
        headers={"Authorization": f"Basic {wrong_secret}!"},  # not base64
        data={"grant_type": "client_credentials"},
    )
    await run.send(  # Basic and the body at once
        "POST",
        "/oauth/token",
        400,
        headers={"Authorization": good_basic},
        data={**form, "client_secret": shop.service_secret},
    )
    await run.send(  # a parameter twice
        "POST",
        "/oauth/token",
        400,
        content=f"grant_type=client_credentials&client_id={service}"
        f"&client_secret={shop.service_secret}&client_secret={wrong_secret}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    await run.send(
        "POST",
        "/oauth/token",
        400,
        data={**form, "grant_type": "password", "client_secret": shop.service_secret},
    )
    await run.send(  # more scope than granted
        "POST",
        "/oauth/token",
        400,
        data={**form, "client_secret": shop.service_secret, "scope": "admin.everything"},
    )
    await run.send(  # 415
        "POST",
        "/oauth/token",
        415,
        content=f"client_id={service}&client_secret={shop.service_secret}",
        headers={"Content-Type": "text/plain"},
    )
    await run.send(  # 413
        "POST",
        "/oauth/token",
        413,
        data={**form, "client_secret": wrong_secret, "padding": "x" * (70 * 1024)},
    )
    await run.send(  # 405, the secret in the query string
        "GET", "/oauth/token", 405, query=[("client_secret", shop.service_secret)]
    )

    # --- anonymous login and refresh (tokens in query strings) ------------------------------
    login_query = [("tenant", tenant), ("client_id", storefront), ("currency", "EUR")]
    anonymous = (
        await run.send("GET", "/customerlogin/auth/anonymous/login", 200, query=login_query)
    ).json()
    await run.send(  # an unknown parameter name hides a secret: masked, name and value
        "GET",
        "/customerlogin/auth/anonymous/login",
        200,
        query=[("tenant", tenant), ("client_id", storefront), ("password", wrong_password)],
    )
    await run.send(  # a token sent as a bare name
        "GET",
        "/customerlogin/auth/anonymous/login",
        200,
        query=[("tenant", tenant), ("client_id", storefront), (unknown_token, "")],
    )
    await run.send(
        "GET",
        "/customerlogin/auth/anonymous/login",
        401,
        query=[("tenant", tenant), ("client_id", "no-such-storefront")],
    )
    refresh_query = [("tenant", tenant), ("client_id", storefront)]
    refreshed = (
        await run.send(
            "GET",
            "/customerlogin/auth/anonymous/refresh",
            200,
            query=[*refresh_query, ("refresh_token", anonymous["refresh_token"])],
        )
    ).json()
    await run.send(  # the deprecated refresh by an anonymous access token
        "GET",
        "/customerlogin/auth/anonymous/refresh",
        200,
        query=[*refresh_query, ("anonymous_token", refreshed["access_token"])],
    )
    await run.send(
        "GET",
        "/customerlogin/auth/anonymous/refresh",
        400,
        query=[*refresh_query, ("refresh_token", unknown_token)],
    )
    await run.send(
        "GET",
        "/customerlogin/auth/anonymous/refresh",
        400,
        query=[*refresh_query, ("anonymous_token", unknown_token)],
    )
    await run.send(
        "GET",
        "/customerlogin/auth/anonymous/refresh",
        400,
        query=[
            *refresh_query,
            ("refresh_token", refreshed["refresh_token"]),
            ("refresh_token", unknown_token),
        ],
    )

    # --- customer login (password in a JSON body, anonymous token in Authorization) ---------
    login_path = f"/customer/{tenant}/login"
    visitor = {"Authorization": f"Bearer {refreshed['access_token']}"}
    await run.send(
        "POST",
        login_path,
        401,
        headers=visitor,
        json={"email": shop.email, "password": wrong_password},
    )
    customer = (
        await run.send(
            "POST",
            login_path,
            200,
            headers=visitor,
            json={"email": shop.email, "password": shop.password},
        )
    ).json()
    await run.send(
        "POST",
        login_path,
        401,
        headers={"Authorization": f"Bearer {unknown_token}"},
        json={"email": shop.email, "password": shop.password},
    )
    await run.send(
        "POST",
        login_path,
        415,
        headers=visitor,
        content=f"email={shop.email}&password={wrong_password}",
    )
    await run.send(
        "POST",
        login_path,
        400,
        headers={**visitor, "Content-Type": "application/json"},
        content=f'{{"email": "{shop.email}", "password": "{wrong_password}"',  # unterminated
    )
    await run.send(
        "POST",
        login_path,
        400,
        headers=visitor,
        json={"email": shop.email, "password": [wrong_password]},
    )

    # --- validate, refresh, logout (tokens in Authorization and in query strings) -----------
    customer_bearer = {"Authorization": f"Bearer {customer['access_token']}"}
    validate = f"/customer/{tenant}/validateauthtoken"
    await run.send("GET", validate, 200, headers=customer_bearer)
    await run.send(
        "GET",
        validate,
        401,
        headers={"Authorization": f"Bearer {unknown_token}"},
        query=[("accessToken", customer["access_token"])],
    )
    await run.send("GET", validate, 401)
    refresh = f"/customer/{tenant}/refreshauthtoken"
    switched = (
        await run.send(
            "GET",
            refresh,
            200,
            headers=customer_bearer,
            query=[("refreshToken", customer["refresh_token"]), ("legalEntityId", "le-2")],
        )
    ).json()
    await run.send(
        "GET", refresh, 400, headers=customer_bearer, query=[("refreshToken", unknown_token)]
    )
    await run.send("GET", refresh, 401, query=[("refreshToken", switched["refresh_token"])])
    logout = f"/customer/{tenant}/logout"
    await run.send(
        "GET",
        logout,
        401,
        headers={"Authorization": f"Bearer {unknown_token}"},
        query=[("accessToken", switched["access_token"])],
    )
    await run.send(
        "GET",
        logout,
        204,
        headers={"Authorization": f"Bearer {switched['access_token']}"},
        query=[("accessToken", switched["access_token"])],
    )
    await run.send(
        "GET", validate, 401, headers={"Authorization": f"Bearer {switched['access_token']}"}
    )

    # --- introspection and revocation (RFC 7662, RFC 7009) ----------------------------------
    service_token = (
        await run.send(
            "POST", "/oauth/token", 200, data={**form, "client_secret": shop.service_secret}
        )
    ).json()["access_token"]
    body_auth = {"client_id": service, "client_secret": shop.service_secret}
    await run.send("POST", "/oauth/introspect", 200, data={"token": service_token, **body_auth})
    await run.send(
        "POST",
        "/oauth/introspect",
        200,
        headers={"Authorization": good_basic},
        json={"token": service_token, "token_type_hint": "access_token"},
    )
    await run.send(  # a public storefront client, by client_id alone
        "POST",
        "/oauth/introspect",
        200,
        data={"token": anonymous["access_token"], "client_id": storefront},
    )
    await run.send(
        "POST",
        "/oauth/introspect",
        401,
        data={"token": service_token, "client_id": service, "client_secret": wrong_secret},
    )
    await run.send(
        "POST",
        "/oauth/introspect",
        401,
        headers={"Authorization": wrong_basic},
        data={"token": service_token},
    )
    await run.send("POST", "/oauth/introspect", 200, data={"token": unknown_token, **body_auth})
    await run.send("POST", "/oauth/revoke", 200, data={"token": service_token, **body_auth})
    await run.send(
        "POST",
        "/oauth/revoke",
        401,
        headers={"Authorization": wrong_basic},
        data={"token": service_token},
    )
    await run.send(
        "POST",
        "/oauth/revoke",
        200,
        headers={"Authorization": good_basic},
        data={"token": unknown_token},
    )
    await run.send(
        "GET",
        "/oauth/revoke",
        405,
        query=[("token", service_token), ("token_type_hint", "refresh_token")],
    )

    # --- paths the bridge does not serve ----------------------------------------------------
    await run.send(
        "GET",
        "/nowhere",
        404,
        query=[("access_token", service_token), ("client_secret", wrong_secret)],
    )
    await run.send(
        "GET",
        f"/customer/{tenant}/nothing",
        404,
        query=[("refreshToken", customer["refresh_token"])],
    )
    await run.send("POST", "/healthz", 405, headers={"Authorization": f"Bearer {service_token}"})

    # --- secrets in the parameters whose values the log shows --------------------------------
    await run.send(  # every context parameter as a storefront sends it: shown
        "GET",
        "/customerlogin/auth/anonymous/login",
        200,
        query=[
            *login_query,
            ("siteCode", "main"),
            ("language", "de-DE"),
            ("targetLocation", "DE"),
        ],
    )
    real_secrets = {
        "access token": anonymous["access_token"],
        "refresh token": customer["refresh_token"],
        "SaaS token": customer["saas_token"],
        "client secret": shop.service_secret,
    }
    # Each safe parameter on a route that reads it (the anonymous login for the others).
    route_of = {"legalEntityId": refresh, "token_type_hint": "/oauth/revoke"}
    for name in sorted(SAFE_QUERY_NAMES):
        path = route_of.get(name, "/customerlogin/auth/anonymous/login")
        for value in real_secrets.values():
            query = [(n, v) for n, v in login_query if n != name]
            await run.send("GET", path, None, query=[*query, (name, value)])


async def test_no_secret_reaches_a_log_record_or_an_error_body(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    capture_service_logs(caplog)
    run = Exercise(bridge)
    with uvicorn_access_log_as_deployed():
        await exercise_every_route(bridge, run)

    records = [r for r in caplog.records if r.name.split(".")[0] not in CLIENT_LOGGERS]
    # Said without the values, so that a failure does not print them.
    leaks = [
        f"a {len(value)}-char secret in a {record.levelname} record of {record.name} "
        f"(at {record.pathname}:{record.lineno})"
        for record in records
        for text in texts_of(record)
        for value, form in run.variants()
        if form in text
    ]
    leaks += [
        f"a {len(value)}-char secret in the error body of {where}"
        for where, body in run.error_bodies
        for value, form in run.variants()
        if form in body
    ]
    assert not leaks, "\n".join(sorted(set(leaks)))
    # Logging was on: the store's DEBUG output and the access log are there.
    assert any(r.name.startswith("sqlalchemy.engine") for r in records), "no SQL log captured"
    access = [r for r in records if r.name == ACCESS_LOGGER]
    assert len(access) == len(run.sent), [r.getMessage() for r in access]
    for record, sent in zip(access, run.sent, strict=True):
        assert record.levelno == logging.INFO
        fragment = sent.log_fragment(run.secrets)
        assert fragment in record.getMessage(), (fragment, record.getMessage())
    masked_names = {"refresh_token", "anonymous_token", "refreshToken", "accessToken"}
    logged = "\n".join(record.getMessage() for record in access)
    for name in masked_names:
        assert f"{name}=***" in logged, name
    assert "***=***" in logged  # the unknown names
    # What storefronts send in the safe parameters is still shown.
    for shown in ("currency=EUR", "siteCode=main", "language=de-DE", "targetLocation=DE"):
        assert shown in logged, shown
    assert "legalEntityId=le-2" in logged and "token_type_hint=refresh_token" in logged
    assert "tenant=leaks&client_id=" in logged  # (the client_id: by each line's fragment)
    for name in SAFE_QUERY_NAMES:  # and a secret in any of them is not
        assert f"{name}=***" in logged, name

    assert len(run.error_bodies) >= 30  # the failure paths were really taken


# --- the masking helpers themselves ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("/healthz", b"", "/healthz"),
        (
            "/customerlogin/auth/anonymous/refresh",
            b"tenant=shop&client_id=sf1&refresh_token=R3fr3shV4lue",
            "/customerlogin/auth/anonymous/refresh?tenant=shop&client_id=sf1&refresh_token=***",
        ),
        (
            "/customerlogin/auth/anonymous/refresh",
            b"anonymous_token=AnOnV4lue&siteCode=de&language=de-DE",
            "/customerlogin/auth/anonymous/refresh?anonymous_token=***&siteCode=de&language=de-DE",
        ),
        (
            "/customer/shop/refreshauthtoken",
            b"refreshToken=AbCV4lue%2Fd&legalEntityId=le-1",
            "/customer/shop/refreshauthtoken?refreshToken=***&legalEntityId=le-1",
        ),
        ("/customer/shop/logout", b"accessToken=T0kV4lue", "/customer/shop/logout?accessToken=***"),
        ("/x", b"SeCrEtBareName", "/x?***=***"),
        ("/x", b"password=hunter22&client_secret=S3cr3tV4lue", "/x?***=***&client_secret=***"),
        ("/x", b"refresh%5Ftoken=enc0ded", "/x?refresh_token=***"),
        ("/x", b"currency=EUR&targetLocation=DE", "/x?currency=EUR&targetLocation=DE"),
        ("/x", b"currency=EUR+x&targetLocation=a%26b", "/x?currency=***&targetLocation=***"),
        (
            "/x",
            b"tenant=R3fr3shV4lueOfFortyThreeCharactersLong-_abc&client_id=V4lue" + b"x" * 40,
            "/x?tenant=***&client_id=***",
        ),
        ("/x", b"refresh_token=a&refresh_token=b", "/x?refresh_token=***&refresh_token=***"),
    ],
)
def test_masked_target_shows_only_safe_values(path: str, query: bytes, expected: str) -> None:
    shown = masked_target(path, query)
    assert shown == expected
    for secret in ("V4lue", "SeCrEtBareName", "hunter22", "enc0ded"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "-"),
        (b"Bearer abc.def-ghi", "Bearer ***"),
        (b"Basic " + base64.b64encode(b"id:secret"), "Basic ***"),
        (b"bearer lowercase", "bearer ***"),
        (b"abc-123_x", "***"),
    ],
)
def test_masked_authorization_shows_the_scheme_only(header: bytes | None, expected: str) -> None:
    headers = [(b"host", b"example")]
    if header is not None:
        headers.append((b"authorization", header))
    assert masked_authorization(headers) == expected


@pytest.mark.parametrize("header", [b"correcthorsebatterystaple", b"correct horse battery"])
def test_masked_authorization_never_shows_a_credential_sent_without_a_scheme(
    header: bytes,
) -> None:
    shown = masked_authorization([(b"authorization", header)])
    assert "correct" not in shown


async def test_a_path_cannot_forge_an_access_log_line(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    response = await bridge.http.get("/x%0A127.0.0.1%20%22GET%20/forged%22%20200")
    assert response.status_code == 404
    (record,) = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert "\n" not in record.getMessage()


async def test_uvicorn_raw_access_line_stays_off_when_its_logger_has_a_handler(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    secret = secrets.token_urlsafe(32)
    logger = logging.getLogger(UVICORN_ACCESS_LOGGER)
    assert logger.handlers, "pytest attaches caplog's handler to non-propagating loggers"
    response = await bridge.http.get(
        "/customerlogin/auth/anonymous/refresh",
        params={"tenant": "nosuch", "client_id": "x", "refresh_token": secret},
    )
    assert response.status_code >= 400
    assert any(r.name == ACCESS_LOGGER for r in caplog.records)
    leaked = [
        r.name
        for r in caplog.records
        if r.name.split(".")[0] not in CLIENT_LOGGERS and secret in r.getMessage()
    ]
    assert leaked == []
