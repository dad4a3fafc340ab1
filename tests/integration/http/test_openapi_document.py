"""The checked-in OpenAPI document (`http_bridge/openapi.json`) tells the truth.

It is valid OpenAPI 3.0, lists exactly the (method, path) pairs of `http_bridge.app.ROUTES`, is
what `GET /openapi.json` serves, and describes what the live bridge really answers: every route's
successes and errors, over both backends, pass schemathesis' conformance checks (status code
documented, content type, required headers, body schema). A response that drifts from the
document (a wrong type, an extra field, a missing header, an undocumented status) fails them.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime
import functools
import json
import operator
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
import schemathesis
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.openapi.checks import JsonSchemaError, MissingHeaders, UndefinedStatusCode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema
from starlette.routing import Route

import http_bridge
from http_bridge.access_log import AccessLog
from http_bridge.app import ROUTES, context_of
from server import admin
from server.mail import outbox
from server.records import IdentityProviderRecord
from tests.integration.http.conftest import Bridge
from tests.support.harness import Shop
from tests.support.local_idp import LocalIdp, pkce_pair
from tests.support.mail import token_in
from tests.support.ports import free_port

DOCUMENT_PATH = Path(http_bridge.__file__).parent / "openapi.json"
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
BIG = 70 * 1024  # over the default 64 KiB TOKENSERVICE_MAX_MESSAGE_BYTES

# What test_every_route_answers_as_documented drives each operation to (429 and 503 need a
# throttled or failing store: the 503s are driven by their own tests below).
EXERCISED = {
    ("POST", "/oauth/token"): {200, 400, 401, 413, 415},
    ("POST", "/oauth2/token"): {200, 400, 401, 413, 415},
    ("POST", "/oauth/introspect"): {200, 400, 401, 413, 415},
    ("POST", "/oauth/revoke"): {200, 400, 401, 413, 415},
    ("GET", "/oauth/revocations"): {200, 400, 401},
    ("GET", "/customerlogin/auth/anonymous/login"): {200, 400, 401, 403},
    ("GET", "/customerlogin/auth/anonymous/refresh"): {200, 400, 403},
    ("POST", "/customer/{tenant}/login"): {200, 400, 401, 403, 404, 413, 415},
    ("GET", "/customer/{tenant}/refreshauthtoken"): {200, 400, 401, 403, 404},
    ("GET", "/customer/{tenant}/validateauthtoken"): {200, 400, 401, 404},
    ("GET", "/customer/{tenant}/logout"): {204, 400, 401, 403, 404},
    ("POST", "/customer/{tenant}/exchangeauthtoken"): {200, 400, 401, 403, 404, 413, 415, 503},
    ("POST", "/customer/{tenant}/socialLogin"): {200, 400, 401, 403, 404, 413, 415},
    ("GET", "/customer/{tenant}/me/sessions"): {200, 400, 401, 403, 404},
    ("DELETE", "/customer/{tenant}/me/sessions"): {204, 400, 401, 403, 404},
    ("DELETE", "/customer/{tenant}/me/sessions/{sessionId}"): {204, 400, 401, 403, 404},
    ("POST", "/customer/{tenant}/signup"): {201, 400, 401, 403, 404, 409, 413, 415},
    ("POST", "/customer/{tenant}/signup/optin/refresh_token"): {202, 400, 401},
    ("GET", "/customer/{tenant}/signup/optin/{token}"): {200, 400, 401},
    ("POST", "/customer/{tenant}/password/change"): {204, 400, 401},
    ("POST", "/customer/{tenant}/password/reset"): {204, 400, 401, 429},
    ("POST", "/customer/{tenant}/password/reset/update"): {204, 400, 401},
    ("POST", "/customer/{tenant}/me/accounts/internal/email/change"): {204, 400, 401, 403},
    ("POST", "/customer/{tenant}/me/accounts/internal/email/change/confirm"): {204, 400, 409},
    ("GET", "/.well-known/jwks.json"): {200},
    ("GET", "/.well-known/oauth-authorization-server"): {200},
    ("GET", "/openapi.json"): {200},
    ("GET", "/healthz"): {200},
    ("GET", "/readyz"): {200},
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def schema(document: dict[str, Any]) -> OpenApiSchema:
    return schemathesis.openapi.from_dict(document)


@pytest.fixture
def http(bridge: Bridge) -> httpx.AsyncClient:
    return bridge.http


def operations_of(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def conforms(
    schema: OpenApiSchema, response: httpx.Response, template: str | None = None
) -> tuple[str, str, int]:
    """Runs schemathesis' conformance checks on a real response; raises on any mismatch."""
    method = response.request.method
    if template is None:
        operation = schema.find_operation_by_path(method, response.request.url.path)
        assert operation is not None, f"{method} {response.request.url.path} is not documented"
    else:
        operation = schema[template][method]
    # The bridge's path parameters are whole segments: {tenant} of /customer/{tenant}/..., and
    # {sessionId} of .../me/sessions/{sessionId}.
    raw_path = response.request.url.raw_path.decode().split("?", 1)[0]
    parameters = {
        template[1:-1]: segment
        for template, segment in zip(operation.path.split("/"), raw_path.split("/"), strict=False)
        if template.startswith("{")
    }
    operation.Case(path_parameters=parameters).validate_response(response, checks=CHECKS)
    return method, operation.path, response.status_code


@dataclasses.dataclass
class Check:
    """Asserts a response's status, validates it against the document, and records it."""

    schema: OpenApiSchema
    seen: set[tuple[str, str, int]] = dataclasses.field(default_factory=set)

    def __call__(
        self, response: httpx.Response, status: int, template: str | None = None
    ) -> dict[str, Any]:
        assert response.status_code == status, response.text
        self.seen.add(conforms(self.schema, response, template))
        body: dict[str, Any] = response.json() if response.content else {}
        return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def test_document_is_valid_openapi_3_and_an_invalid_one_is_caught(
    document: dict[str, Any],
) -> None:
    assert document["openapi"] == "3.0.3"
    assert document["info"]["title"] == "tokenservice HTTP bridge"
    assert document["info"]["version"]
    assert {"url": "http://localhost:8080"}.items() <= document["servers"][0].items()
    schemathesis.openapi.from_path(DOCUMENT_PATH).validate()

    healthz = ["paths", "/healthz", "get"]
    breakages = {
        "no title": (["info", "title"], None),
        "content not a map": ([*healthz, "responses", "200", "content"], "text"),
        "no responses": ([*healthz, "responses"], None),
        "an unknown parameter location": ([*healthz, "parameters"], [{"name": "x", "in": "x"}]),
    }
    for name, (keys, value) in breakages.items():
        broken = copy.deepcopy(document)
        parent = functools.reduce(operator.getitem, keys[:-1], broken)
        if value is None:
            del parent[keys[-1]]
        else:
            parent[keys[-1]] = value
        with pytest.raises(jsonschema_rs.ValidationError):
            schemathesis.openapi.from_dict(broken).validate()
            pytest.fail(f"{name} passed validation")


def methods_of(route: Route) -> set[str]:
    """The methods of one of the bridge's routes, which all name theirs."""
    assert route.methods is not None, f"{route.path} names no methods"
    return route.methods


def test_document_is_checked_in_as_two_space_indented_json(document: dict[str, Any]) -> None:
    text = DOCUMENT_PATH.read_text(encoding="utf-8")
    assert text == json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def test_document_lists_exactly_the_bridge_routes(document: dict[str, Any]) -> None:
    routed = {
        (method, route.path) for route in ROUTES for method in methods_of(route) if method != "HEAD"
    }
    assert operations_of(document) == routed
    operation_ids = [
        operation["operationId"]
        for item in document["paths"].values()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]
    assert len(operation_ids) == len(set(operation_ids)) == len(routed)


def test_every_response_schema_resolves_and_every_example_conforms(
    document: dict[str, Any],
) -> None:
    examples = 0
    for item in document["paths"].values():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            for response in operation["responses"].values():
                for media in response.get("content", {}).values():
                    schema = {**media["schema"], "components": document["components"]}
                    validator = jsonschema_rs.validator_for(schema)  # raises on a dangling $ref
                    if "example" in media:
                        validator.validate(media["example"])
                        examples += 1
    assert examples >= 2
    with pytest.raises(jsonschema_rs.ValidationError):
        jsonschema_rs.validator_for({"$ref": "#/components/schemas/Nope", **document})


@pytest.mark.parametrize("bridge", ["in_process"], indirect=True)
async def test_served_document_is_the_checked_in_file(
    bridge: Bridge, http: httpx.AsyncClient, schema: OpenApiSchema
) -> None:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.content == DOCUMENT_PATH.read_bytes()
    conforms(schema, response)


async def test_every_route_answers_as_documented(
    bridge: Bridge, http: httpx.AsyncClient, schema: OpenApiSchema
) -> None:
    shop = await bridge.harness.shop("docs")
    other = await bridge.harness.shop("other")
    check = Check(schema)
    for token_path in ("/oauth/token", "/oauth2/token"):
        await _oauth_token(http, check, shop, token_path)
    await _introspect_and_revoke(http, check, shop)
    await _revocation_feed(http, check, shop)
    await _anonymous(http, check, shop, other)
    await _customer(http, check, shop, other)
    await _identity_providers(bridge, check, shop, other)
    await _sessions(bridge, check, shop, other)
    await _accounts(bridge, check, shop, other)
    await _discovery_and_health(http, check)
    await _expired_bearers(bridge, check, shop)  # last: it moves the clock

    seen = check.seen
    driven = {(method, path) for method, path, _ in seen}
    assert driven == set(EXERCISED), "every documented operation must be exercised"
    for operation, statuses in EXERCISED.items():
        got = {status for method, path, status in seen if (method, path) == operation}
        assert got == statuses, operation


async def _oauth_token(http: httpx.AsyncClient, check: Check, shop: Shop, path: str) -> None:
    credentials = {"client_id": shop.service_id, "client_secret": shop.service_secret}
    grant = {"grant_type": "client_credentials"}
    check(await http.post(path, data={**grant, **credentials}), 200)
    check(await http.post(path, json={**grant, **credentials, "scope": "orders.read"}), 200)
    check(
        await http.post(path, data=grant, headers=basic(shop.service_id, shop.service_secret)),
        200,
    )
    check(await http.post(path, data={"grant_type": "password", **credentials}), 400)
    check(await http.post(path, data={**grant, **credentials, "scope": "admin"}), 400)
    check(await http.post(path, json={**grant, **credentials, "scope": 7}), 400)
    repeated = "grant_type=client_credentials&grant_type=client_credentials"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    check(await http.post(path, content=repeated, headers=form), 400)
    both = basic(shop.service_id, shop.service_secret)
    check(await http.post(path, data={**grant, **credentials}, headers=both), 400)
    wrong = {**credentials, "client_secret": "not-the-secret"}
    unauthorized = await http.post(path, data={**grant, **wrong})
    check(unauthorized, 401)
    assert unauthorized.headers["www-authenticate"] == 'Basic realm="tokenservice"'
    check(await http.post(path, data=grant), 401)
    check(await http.post(path, data={**grant, "client_id": shop.storefront_id}), 401)
    check(await http.post(path, json={**grant, **credentials, "rememberMe": True}), 200)
    check(await http.post(path, data={**grant, "scope": "x" * BIG}), 413)
    check(await http.post(path, content=repeated, headers={"Content-Type": "text/x"}), 415)


async def _introspect_and_revoke(http: httpx.AsyncClient, check: Check, shop: Shop) -> None:
    service = {"client_id": shop.service_id, "client_secret": shop.service_secret}
    issued = await http.post("/oauth/token", data={"grant_type": "client_credentials", **service})
    service_token = issued.json()["access_token"]
    anonymous = (await _anonymous_login(http, shop)).json()
    customer = (await _customer_login(http, shop)).json()

    for path in ("/oauth/introspect", "/oauth/revoke"):
        check(await http.post(path, data=service), 400)  # no token
        check(await http.post(path, data={"token": "x"}), 401)  # no client
        check(await http.post(path, data={"token": "x", **basic("nobody", "nothing")}), 401)
        check(await http.post(path, data={**service, "token": "x" * BIG}), 413)
        check(await http.post(path, content=b"token=x", headers={"Content-Type": "text/x"}), 415)

    introspect = "/oauth/introspect"
    active = check(await http.post(introspect, data={**service, "token": service_token}), 200)
    assert active["active"] is True and active["kind"] == "service"
    about_customer = check(
        await http.post(introspect, json={**service, "token": customer["access_token"]}), 200
    )
    assert {"sub", "session_id", "email"} <= about_customer.keys()
    public = {"client_id": shop.storefront_id, "token": anonymous["refresh_token"]}
    assert check(await http.post(introspect, data=public), 200)["token_use"] == "refresh"
    inactive = check(await http.post(introspect, data={**service, "token": "unknown"}), 200)
    assert inactive == {"active": False}

    revoked = await http.post("/oauth/revoke", data={**service, "token": service_token})
    check(revoked, 200)
    assert revoked.content == b""
    gone = check(await http.post(introspect, data={**service, "token": service_token}), 200)
    assert gone == {"active": False}


async def _revocation_feed(http: httpx.AsyncClient, check: Check, shop: Shop) -> None:
    feed = "/oauth/revocations"
    service = basic(shop.service_id, shop.service_secret)
    async with http.stream("GET", feed, headers=service) as streamed:
        # An endless stream: its head and first event, validated as the response they begin.
        first = b""
        async for chunk in streamed.aiter_bytes():
            first += chunk
            if b"\n\n" in first:
                break
        head = httpx.Response(
            streamed.status_code,
            headers=streamed.headers,
            content=first,
            request=streamed.request,
        )
        head.elapsed = datetime.timedelta(0)  # what a response read to its end would carry
    assert head.status_code == 200, first
    check.seen.add(conforms(check.schema, head))  # every event validated against the schema
    assert first.startswith(b"retry: 1000\nid: ") and b"\nevent: reset\n" in first
    check(await http.get(feed), 401)
    check(await http.get(feed, headers=basic(shop.service_id, "not-the-secret")), 401)
    check(await http.get(feed, params={"after": "x"}, headers=service), 400)
    check(await http.get(feed, headers={**service, "Last-Event-ID": "-1"}), 400)


async def _anonymous_login(http: httpx.AsyncClient, shop: Shop, **query: str) -> httpx.Response:
    params = {"tenant": shop.tenant, "client_id": shop.storefront_id, **query}
    response = await http.get("/customerlogin/auth/anonymous/login", params=params)
    assert response.status_code == 200, response.text
    return response


async def _customer_login(http: httpx.AsyncClient, shop: Shop) -> httpx.Response:
    anonymous = (await _anonymous_login(http, shop)).json()
    response = await http.post(
        f"/customer/{shop.tenant}/login",
        json={"email": shop.email, "password": shop.password},
        headers=bearer(anonymous["access_token"]),
    )
    assert response.status_code == 200, response.text
    return response


async def _anonymous(http: httpx.AsyncClient, check: Check, shop: Shop, other: Shop) -> None:
    login = "/customerlogin/auth/anonymous/login"
    context = {"currency": "EUR", "siteCode": "main", "language": "en", "targetLocation": "DE"}
    first = check(await _anonymous_login(http, shop, **context), 200)
    mine = {"tenant": shop.tenant, "client_id": shop.storefront_id}
    check(await http.get(login, params={**mine, "tenant": "Not-A-Tenant"}), 400)
    check(await http.get(login, params={**mine, "tenant": "nosuchshop"}), 400)
    check(await http.get(login, params={**mine, "client_id": shop.service_id}), 400)
    check(await http.get(login, params=[*mine.items(), ("client_id", "again")]), 400)
    unknown = await http.get(login, params={**mine, "client_id": "unknown-client"})
    check(unknown, 401)
    check(await http.get(login, params={**mine, "client_id": other.storefront_id}), 403)

    refresh = "/customerlogin/auth/anonymous/refresh"
    renewed = check(
        await http.get(
            refresh, params={**mine, **context, "refresh_token": first["refresh_token"]}
        ),
        200,
    )
    assert renewed["sessionId"] == first["sessionId"]
    legacy = check(
        await http.get(refresh, params={**mine, "anonymous_token": renewed["access_token"]}), 200
    )
    assert "refresh_token" not in legacy and legacy["sessionId"] == first["sessionId"]
    check(await http.get(refresh, params=mine), 400)
    check(await http.get(refresh, params={**mine, "refresh_token": "not-a-token"}), 400)
    foreign = (await _anonymous_login(http, other)).json()["refresh_token"]
    check(await http.get(refresh, params={**mine, "refresh_token": foreign}), 403)


async def _customer(http: httpx.AsyncClient, check: Check, shop: Shop, other: Shop) -> None:
    base = f"/customer/{shop.tenant}"
    no_such_tenant_segment = "/customer/a%2Fb"  # decodes to two segments: no route matches
    password = {"email": shop.email, "password": shop.password}
    anonymous = (await _anonymous_login(http, shop)).json()["access_token"]
    foreign = (await _anonymous_login(http, other)).json()["access_token"]

    login = f"{base}/login"
    check(
        await http.post(login, json={**password, "email": "nobody"}, headers=bearer(anonymous)), 400
    )
    check(await http.post(login, json=password), 401)
    wrong = {**password, "password": "wrong password"}
    unauthorized = await http.post(login, json=wrong, headers=bearer(anonymous))
    check(unauthorized, 401)
    assert unauthorized.headers["www-authenticate"].startswith("Bearer ")
    check(await http.post(login, json=password, headers=bearer(foreign)), 403)
    path = "/customer/{tenant}/login"
    check(await http.post(f"{no_such_tenant_segment}/login", json=password), 404, path)
    check(
        await http.post(login, json={**password, "password": "x" * BIG}, headers=bearer(anonymous)),
        413,
    )
    check(await http.post(login, data=password, headers=bearer(anonymous)), 415)
    logged_in = await http.post(login, json=password, headers=bearer(anonymous))
    check(logged_in, 200)
    customer = logged_in.json()

    refresh = f"{base}/refreshauthtoken"
    session = bearer(customer["access_token"])
    renewed = await http.get(
        refresh, params={"refreshToken": customer["refresh_token"]}, headers=session
    )
    check(renewed, 200)
    customer = renewed.json()
    switch = {"refreshToken": customer["refresh_token"], "legalEntityId": "le-2"}
    switched = await http.get(refresh, params=switch, headers=session)
    check(switched, 200)
    customer = switched.json()
    stranger = {"refreshToken": customer["refresh_token"], "legalEntityId": "le-9"}
    check(await http.get(refresh, params=stranger, headers=session), 403)
    check(await http.get(refresh, headers=session), 400)
    check(await http.get(refresh, params={"refreshToken": customer["refresh_token"]}), 401)
    path = "/customer/{tenant}/refreshauthtoken"
    check(await http.get(f"{no_such_tenant_segment}/refreshauthtoken", headers=session), 404, path)

    validate = f"{base}/validateauthtoken"
    service = await http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": shop.service_id,
            "client_secret": shop.service_secret,
        },
    )
    for token in (anonymous, customer["access_token"], service.json()["access_token"]):
        check(await http.get(validate, headers=bearer(token)), 200)
    details = check(await http.get(validate, headers=bearer(customer["access_token"])), 200)
    assert (details["email"], details["legalEntityId"]) == (shop.email, "le-2")
    check(await http.get("/customer/NotATenant/validateauthtoken", headers=session), 400)
    check(await http.get(validate, headers=bearer("not-a-token")), 401)
    check(await http.get(validate), 401)
    path = "/customer/{tenant}/validateauthtoken"
    check(await http.get(f"{no_such_tenant_segment}/validateauthtoken", headers=session), 404, path)

    logout = f"{base}/logout"
    check(await http.get(logout, params={"accessToken": "x" * 600}, headers=session), 400)
    elsewhere = (await _anonymous_login(http, shop)).json()["access_token"]
    check(await http.get(logout, params={"accessToken": elsewhere}, headers=session), 403)
    path = "/customer/{tenant}/logout"
    check(await http.get(f"{no_such_tenant_segment}/logout", headers=session), 404, path)
    ended = await http.get(logout, headers=session)
    check(ended, 204)
    assert ended.content == b""
    check(await http.get(logout, headers=session), 401)


async def _identity_providers(bridge: Bridge, check: Check, shop: Shop, other: Shop) -> None:
    """Token exchange and social login, with tests/support/local_idp.py as the provider."""
    http = bridge.http
    with LocalIdp() as idp:
        await bridge.harness.core.store.put_identity_provider(idp.record(shop.tenant))
        anonymous = bearer((await _anonymous_login(http, shop)).json()["access_token"])
        foreign = bearer((await _anonymous_login(http, other)).json()["access_token"])
        exchange = f"/customer/{shop.tenant}/exchangeauthtoken"
        subject = {"subjectAccessToken": idp.token(shop.email)}
        body = check(await http.post(exchange, params=subject, headers=anonymous), 200)
        assert body["subject_access_token"] == subject["subjectAccessToken"]
        anonymous = bearer((await _anonymous_login(http, shop)).json()["access_token"])
        check(await http.post(exchange, headers=anonymous), 400)
        check(
            await http.post(exchange, params={"subjectAccessToken": "a.b.c"}, headers=anonymous),
            400,
        )
        check(await http.post(exchange, params=subject), 401)
        check(await http.post(exchange, params=subject, headers=foreign), 403)
        path = "/customer/{tenant}/exchangeauthtoken"
        check(await http.post("/customer/a%2Fb/exchangeauthtoken", params=subject), 404, path)
        big = {"config": "x" * BIG}
        check(await http.post(exchange, params=subject, headers=anonymous, json=big), 413)
        text = {**anonymous, "Content-Type": "text/x"}
        check(await http.post(exchange, params=subject, headers=text, content=b"x"), 415)

        social = f"/customer/{shop.tenant}/socialLogin"
        verifier, _ = pkce_pair()
        redirect = "https://shop.example/callback"
        code = idp.authorization_code(shop.email, redirect, verifier)
        login = {"code": code, "redirect_uri": redirect, "code_verifier": verifier}
        body = check(await http.post(social, params=login, headers=anonymous), 200)
        assert body["social_id_token"]
        anonymous = bearer((await _anonymous_login(http, shop)).json()["access_token"])
        check(await http.post(social, params=login, headers=anonymous), 400)  # used up
        check(await http.post(social, params=login), 401)
        check(await http.post(social, params=login, headers=foreign), 403)
        path = "/customer/{tenant}/socialLogin"
        check(await http.post("/customer/a%2Fb/socialLogin", params=login), 404, path)
        check(await http.post(social, params=login, headers=anonymous, json=big), 413)
        check(await http.post(social, params=login, headers=text, content=b"x"), 415)

        # A provider nobody answers for: 503.
        gone = IdentityProviderRecord(
            tenant=shop.tenant,
            name="gone",
            issuer=idp.issuer,
            jwks_uri=f"http://127.0.0.1:{free_port()}/jwks",
            audience=idp.audience,
            created_at=0,
        )
        await bridge.harness.core.store.put_identity_provider(gone)
        unreachable = {**subject, "config": "gone"}
        check(await http.post(exchange, params=unreachable, headers=anonymous), 503)


async def _sessions(bridge: Bridge, check: Check, shop: Shop, other: Shop) -> None:
    http = bridge.http
    listing = f"/customer/{shop.tenant}/me/sessions"
    no_such_tenant = "/customer/a%2Fb/me/sessions"
    mine = [await bridge.customer_login(shop) for _ in range(2)]
    theirs = await bridge.customer_login(other)
    me = bearer(mine[0]["access_token"])
    visitor = bearer((await bridge.anonymous_login(shop))["access_token"])
    page = check(await http.get(listing, params={"pageSize": "1"}, headers=me), 200)
    check(await http.get(listing, params={"pageToken": page["nextPageToken"]}, headers=me), 200)
    check(await http.get(listing, params={"pageSize": "x"}, headers=me), 400)
    check(await http.get(listing), 401)
    check(await http.get(listing, headers=visitor), 403)
    check(await http.get(no_such_tenant, headers=me), 404, "/customer/{tenant}/me/sessions")

    one = "/customer/{tenant}/me/sessions/{sessionId}"
    check(await http.delete(f"{listing}/{theirs['session_id']}", headers=me), 404, one)
    check(await http.delete(f"{listing}/not%20an%20id", headers=me), 400, one)
    check(await http.delete(f"{listing}/{mine[1]['session_id']}"), 401, one)
    check(await http.delete(f"{listing}/{mine[1]['session_id']}", headers=visitor), 403, one)
    check(await http.delete(f"{listing}/{mine[1]['session_id']}", headers=me), 204, one)

    check(await http.delete(listing, params={"keepCurrent": "yes"}, headers=me), 400)
    check(await http.delete(listing, headers=visitor), 403)
    check(await http.delete(no_such_tenant, headers=me), 404, "/customer/{tenant}/me/sessions")
    check(await http.delete(listing, params={"keepCurrent": "true"}, headers=me), 204)
    check(await http.delete(listing, headers=me), 204)
    check(await http.delete(listing, headers=me), 401)


async def _mailed_token(bridge: Bridge) -> str:
    """The one-time token of the newest message in the outbox."""
    await bridge.harness.core.mail.settled()
    messages = outbox.list_messages(Path(bridge.harness.core.settings.mail_outbox_dir))
    return token_in(messages[-1].body)


async def _accounts(bridge: Bridge, check: Check, shop: Shop, other: Shop) -> None:
    http = bridge.http
    base = f"/customer/{shop.tenant}"
    anonymous = bearer((await _anonymous_login(http, shop)).json()["access_token"])
    foreign = bearer((await _anonymous_login(http, other)).json()["access_token"])
    await admin.set_account_policy(bridge.harness.core, shop.tenant, double_opt_in=True)
    new = {"email": "new@docs.example", "password": "a long and unusual passphrase"}

    signup = f"{base}/signup"
    created = check(await http.post(signup, json=new, headers=anonymous), 201)
    assert created["id"]
    check(await http.post(signup, json=new, headers=anonymous), 409)
    check(await http.post(signup, json={**new, "password": "qwerty123"}, headers=anonymous), 400)
    check(await http.post(signup, json=new), 401)
    check(await http.post(signup, json=new, headers=foreign), 403)
    path = "/customer/{tenant}/signup"
    check(await http.post("/customer/a%2Fb/signup", json=new, headers=anonymous), 404, path)
    big = {**new, "password": "x" * BIG}
    check(await http.post(signup, json=big, headers=anonymous), 413)
    check(await http.post(signup, data=new, headers=anonymous), 415)

    resend = f"{base}/signup/optin/refresh_token"
    check(await http.post(resend, json={"email": new["email"]}, headers=anonymous), 202)
    check(await http.post(resend, json={"email": "nope"}, headers=anonymous), 400)
    check(await http.post(resend, json={"email": new["email"]}), 401)
    optin = f"{base}/signup/optin/" + await _mailed_token(bridge)
    check(await http.get(optin), 401)
    customer = check(await http.get(optin, headers=anonymous), 200)
    check(await http.get(optin, headers=anonymous), 400)  # used

    session = bearer(customer["access_token"])
    change = f"{base}/password/change"
    passwords = {"currentPassword": new["password"], "newPassword": "a new long passphrase"}
    check(await http.post(change, json={**passwords, "newPassword": "short"}, headers=session), 400)
    check(await http.post(change, json=passwords, headers=anonymous), 401)
    check(await http.post(change, json=passwords, headers=session), 204)
    password = passwords["newPassword"]

    email_change = f"{base}/me/accounts/internal/email/change"
    ask = {"email": new["email"], "password": password, "newEmail": shop.email}
    check(await http.post(email_change, json={**ask, "newEmail": "x"}, headers=session), 400)
    check(await http.post(email_change, json={**ask, "password": "wrong!"}, headers=session), 401)
    check(await http.post(email_change, json=ask, headers=bearer(foreign["Authorization"])), 401)
    other_customer = (await _customer_login(http, other)).json()["access_token"]
    check(await http.post(email_change, json=ask, headers=bearer(other_customer)), 403)
    check(await http.post(email_change, json=ask, headers=session), 204)
    confirm = f"{email_change}/confirm"
    taken = {"token": await _mailed_token(bridge)}  # shop.email is the shop customer's
    check(await http.post(confirm, json=taken, headers=anonymous), 409)
    check(await http.post(confirm, json={"token": "x" * 43}, headers=anonymous), 400)
    ask = {**ask, "newEmail": "moved@docs.example"}
    check(await http.post(email_change, json=ask, headers=session), 204)
    moved = {"token": await _mailed_token(bridge)}
    check(await http.post(confirm, json=moved, headers=anonymous), 204)

    reset = f"{base}/password/reset"
    check(await http.post(reset, json={"email": "moved@docs.example"}, headers=anonymous), 204)
    check(await http.post(reset, json={}, headers=anonymous), 400)
    check(await http.post(reset, json={"email": "moved@docs.example"}), 401)
    update = f"{base}/password/reset/update"
    token = await _mailed_token(bridge)
    renewed = {"token": token, "password": "yet another passphrase"}
    check(await http.post(update, json={**renewed, "password": "abc"}, headers=anonymous), 400)
    check(await http.post(update, json=renewed), 401)
    check(await http.post(update, json=renewed, headers=anonymous), 204)
    anonymous = bearer((await _anonymous_login(http, shop)).json()["access_token"])  # reset ended
    many = {"email": "many@docs.example"}
    for _ in range(bridge.harness.core.settings.account_requests_per_email):
        assert (await http.post(reset, json=many, headers=anonymous)).status_code == 204
    check(await http.post(reset, json=many, headers=anonymous), 429)


async def _expired_bearers(bridge: Bridge, check: Check, shop: Shop) -> None:
    """The 401s whose fault says the access token expired conform too."""
    http = bridge.http
    anonymous = (await _anonymous_login(http, shop)).json()
    customer = await bridge.customer_login(shop, anonymous["access_token"])
    bridge.harness.clock.advance(14400 + 1)  # past both access tokens, not the refresh tokens
    base = f"/customer/{shop.tenant}"
    password = {"email": shop.email, "password": shop.password}
    for response in (
        await http.post(f"{base}/login", json=password, headers=bearer(anonymous["access_token"])),
        await http.get(f"{base}/validateauthtoken", headers=bearer(customer["access_token"])),
        await http.get(f"{base}/logout", headers=bearer(customer["access_token"])),
    ):
        body = check(response, 401)
        assert body["fault"]["detail"]["errorcode"] == "keymanagement.service.access_token_expired"


async def _discovery_and_health(http: httpx.AsyncClient, check: Check) -> None:
    for path in (
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
        "/openapi.json",
        "/healthz",
        "/readyz",
    ):
        check(await http.get(path), 200)


@pytest.mark.parametrize("bridge", ["in_process"], indirect=True)
async def test_readyz_while_draining_is_the_documented_503(
    bridge: Bridge, http: httpx.AsyncClient, schema: OpenApiSchema
) -> None:
    app = bridge.running.server.config.app
    assert isinstance(app, AccessLog)  # what uvicorn serves is the bridge's outermost app
    context_of(app).draining = True
    response = await http.get("/readyz")
    assert response.status_code == 503
    conforms(schema, response)


@pytest.mark.parametrize("settings_overrides", [{"sqlite_busy_timeout_ms": 100}])
@pytest.mark.parametrize("database_kind", ["sqlite"])  # locks the SQLite file itself
async def test_a_locked_store_is_the_documented_503_with_retry_after(
    bridge: Bridge, http: httpx.AsyncClient, schema: OpenApiSchema
) -> None:
    shop = await bridge.harness.shop("locked")
    locker = sqlite3.connect(bridge.harness.db_path, timeout=5, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        token = await http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": shop.service_id,
                "client_secret": shop.service_secret,
            },
        )
        login = await http.get(
            "/customerlogin/auth/anonymous/login",
            params={"tenant": shop.tenant, "client_id": shop.storefront_id},
        )
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    for response in (token, login):
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) >= 1
        conforms(schema, response)


@pytest.mark.parametrize("bridge", ["in_process"], indirect=True)
@pytest.mark.parametrize(
    ("method", "path", "family", "status"),
    [
        ("GET", "/oauth/tokens", "OAuth", 404),
        ("GET", "/customer/docs/nothing", "Customer", 404),
        ("PUT", "/oauth/token", "OAuth", 405),
        ("DELETE", "/customer/docs/login", "Customer", 405),
        ("POST", "/customerlogin/auth/anonymous/login", "Customer", 405),
        ("POST", "/healthz", "OAuth", 405),
    ],
)
async def test_unknown_paths_and_methods_answer_the_documented_generic_errors(
    bridge: Bridge,
    http: httpx.AsyncClient,
    document: dict[str, Any],
    method: str,
    path: str,
    family: str,
    status: int,
) -> None:
    response = await http.request(method, path)
    assert response.status_code == status
    documented = document["components"]["responses"][f"{family}{status}"]
    body_schema = documented["content"]["application/json"]["schema"]
    validator = jsonschema_rs.validator_for({**body_schema, "components": document["components"]})
    errors = [error.message for error in validator.iter_errors(response.json())]
    assert errors == []
    for name in documented["headers"]:
        assert name.lower() in response.headers, name
    if status == 405:
        route = next(route for route in ROUTES if route.path_regex.match(path))
        assert set(response.headers["allow"].split(", ")) == route.methods


def tampered(
    real: httpx.Response,
    body: dict[str, Any] | None = None,
    status: int | None = None,
    drop_header: str = "",
) -> schemathesis.Response:
    """A copy of a real response with one thing changed."""
    original = schemathesis.Response.from_any(real)
    headers = {name: value for name, value in original.headers.items() if name != drop_header}
    content = original.content if body is None else json.dumps(body).encode()
    headers["content-length"] = [str(len(content))]
    return schemathesis.Response(
        status_code=original.status_code if status is None else status,
        headers=headers,
        content=content,
        request=original.request,
        elapsed=original.elapsed,
        verify=True,
    )


@pytest.mark.parametrize("bridge", ["in_process"], indirect=True)
async def test_a_response_that_drifts_from_the_document_fails_validation(
    bridge: Bridge, http: httpx.AsyncClient, schema: OpenApiSchema
) -> None:
    shop = await bridge.harness.shop("drift")
    issued = await http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": shop.service_id,
            "client_secret": shop.service_secret,
        },
    )
    refused = await http.get(
        f"/customer/{shop.tenant}/validateauthtoken", headers=bearer("not-a-token")
    )
    assert (issued.status_code, refused.status_code) == (200, 401)
    conforms(schema, issued)
    conforms(schema, refused)
    token = issued.json()
    error = refused.json()
    drifts = {
        "a field of the wrong type": (issued, {**token, "expires_in": "3600"}, JsonSchemaError),
        "an extra field": (issued, {**token, "id_token": "x"}, JsonSchemaError),
        "a missing field": (
            issued,
            {name: value for name, value in token.items() if name != "scope"},
            JsonSchemaError,
        ),
        "an error status that disagrees": (refused, {**error, "status": 400}, JsonSchemaError),
        "an error in the other family's shape": (
            refused,
            {"error": "invalid_token", "error_description": "no"},
            JsonSchemaError,
        ),
        "a 401 without its fault": (
            refused,
            {name: value for name, value in error.items() if name != "fault"},
            JsonSchemaError,
        ),
        "a fault whose strings disagree": (
            refused,
            {**error, "fault": {**error["fault"], "faultstring": "Access Token expired"}},
            JsonSchemaError,
        ),
    }
    cases: list[tuple[str, schemathesis.Response, type[Failure]]] = [
        (name, tampered(real, body=body), failure) for name, (real, body, failure) in drifts.items()
    ]
    cases += [
        ("a missing Cache-Control", tampered(issued, drop_header="cache-control"), MissingHeaders),
        ("a missing challenge", tampered(refused, drop_header="www-authenticate"), MissingHeaders),
        ("an undocumented status", tampered(issued, status=418), UndefinedStatusCode),
        ("a 500", tampered(refused, status=500), UndefinedStatusCode),
    ]
    for name, response, failure in cases:
        method, path = response.request.method, response.request.path_url.split("?")[0]
        operation = schema.find_operation_by_path(str(method), path)
        assert operation is not None
        parameters = {"tenant": shop.tenant} if "{tenant}" in operation.path else {}
        with pytest.raises(FailureGroup) as caught:
            operation.Case(path_parameters=parameters).validate_response(response, checks=CHECKS)
        kinds = {type(exception) for exception in caught.value.exceptions}
        assert failure in kinds, name


MALFORMED_JSON = {
    "deeply nested": b"[" * 50_000,
    "a lone surrogate in a value": b'{"grant_type": "client_credentials", "client_id": "\\ud800"}',
    "a lone surrogate in a name": b'{"\\udc00": 1}',
}


@pytest.mark.parametrize("bridge", ["in_process"], indirect=True)
@pytest.mark.parametrize("body", MALFORMED_JSON.values(), ids=MALFORMED_JSON.keys())
async def test_malformed_json_bodies_answer_a_documented_400(
    bridge: Bridge, http: httpx.AsyncClient, schema: OpenApiSchema, body: bytes
) -> None:
    response = await http.post(
        "/oauth/token", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    conforms(schema, response)
