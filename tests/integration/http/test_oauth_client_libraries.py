"""Standard OAuth 2.0 client libraries get a service token from `POST /oauth/token` with no
custom code: requests-oauthlib, Authlib's requests session and Authlib's httpx clients (sync and
async), each with the client secret in the body (`client_secret_post`) and in HTTP Basic
(`client_secret_basic`). The token they get is real (the gRPC server introspects it as an
active service token of the tenant), a wrong secret surfaces as the library's own OAuth error
carrying `invalid_client` (after a 401 with `WWW-Authenticate`), and a scope request grants only
that scope.

The sync libraries block, and the bridge serves in the test's event loop, so they run in a
thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import requests
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.integrations.httpx_client import OAuth2Client as AuthlibHttpxClient
from authlib.integrations.httpx_client import OAuthError as HttpxOAuthError
from authlib.integrations.requests_client import OAuth2Session as AuthlibRequestsSession
from authlib.integrations.requests_client import OAuthError as RequestsOAuthError
from oauthlib.oauth2 import BackendApplicationClient, InvalidClientError
from requests_oauthlib import OAuth2Session

from tests.integration.http.conftest import Bridge
from tests.support.harness import Shop
from tokenservice.v1 import token_service_pb2 as pb

WRONG_SECRET = "not-the-secret-0123456789abcdefghijklmnopqrstuv"
AUTH_METHODS = ["client_secret_post", "client_secret_basic"]
Response = requests.Response | httpx.Response


@pytest.fixture(autouse=True)
def plain_http_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """oauthlib refuses http:// token URLs unless told the transport is a test's loopback."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def token_url(bridge: Bridge) -> str:
    return f"{bridge.base_url}/oauth/token"


class ResponseRecorder:
    """A compliance hook (the libraries' own extension point) that keeps each token response,
    so the test can check the HTTP status and headers behind the library's exception."""

    def __init__(self) -> None:
        self.responses: list[Response] = []

    def __call__(self, response: Any) -> Any:
        self.responses.append(response)
        return response

    @property
    def last(self) -> Response:
        assert self.responses, "the library sent no token request"
        return self.responses[-1]


async def assert_real_service_token(bridge: Bridge, shop: Shop, token: dict[str, Any]) -> None:
    """The library's token is one the server issued: active, a service token, the tenant's."""
    assert token["token_type"].lower() == "bearer"
    assert token["expires_in"] > 0
    introspected = await bridge.harness.introspect(token["access_token"])
    assert introspected.active
    assert introspected.kind == pb.TOKEN_KIND_SERVICE
    assert introspected.tenant == shop.tenant
    assert introspected.client_id == shop.service_id
    assert introspected.scope.split()[-1] == f"tenant={shop.tenant}"
    # oauthlib hands the scope back as a list, Authlib as the string the server sent.
    scope = token["scope"]
    assert introspected.scope.split() == (scope if isinstance(scope, list) else scope.split())


def assert_invalid_client_response(response: Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert response.json()["error"] == "invalid_client"


# --- requests-oauthlib ----------------------------------------------------------------------


def requests_oauthlib_fetch(
    url: str, client_id: str, secret: str, *, in_body: bool, recorder: ResponseRecorder
) -> dict[str, Any]:
    session = OAuth2Session(client=BackendApplicationClient(client_id=client_id))
    session.register_compliance_hook("access_token_response", recorder)
    try:
        # include_client_id=True puts both in the body; by default requests-oauthlib sends
        # them as HTTP Basic credentials.
        token: dict[str, Any] = session.fetch_token(
            url,
            client_id=client_id,
            client_secret=secret,
            include_client_id=True if in_body else None,
            timeout=10,
        )
    finally:
        session.close()
    return token


@pytest.mark.parametrize("in_body", [True, False], ids=["secret_in_body", "http_basic"])
async def test_requests_oauthlib_gets_a_real_token_and_a_wrong_secret_is_invalid_client(
    bridge: Bridge, in_body: bool
) -> None:
    shop = await bridge.harness.shop("roauth")
    method = "client_secret_post" if in_body else "client_secret_basic"
    recorder = ResponseRecorder()
    token = await asyncio.to_thread(
        requests_oauthlib_fetch,
        token_url(bridge),
        shop.service_id,
        shop.service_secret,
        in_body=in_body,
        recorder=recorder,
    )
    sent_request_used(method, recorder.last)
    await assert_real_service_token(bridge, shop, token)

    with pytest.raises(InvalidClientError) as raised:
        await asyncio.to_thread(
            requests_oauthlib_fetch,
            token_url(bridge),
            shop.service_id,
            WRONG_SECRET,
            in_body=in_body,
            recorder=recorder,
        )
    assert raised.value.error == "invalid_client"
    sent_request_used(method, recorder.last)
    assert_invalid_client_response(recorder.last)


# --- Authlib (requests session, httpx sync client, httpx async client) ----------------------


def authlib_requests_fetch(
    url: str, client_id: str, secret: str, method: str, recorder: ResponseRecorder, **extra: str
) -> dict[str, Any]:
    with AuthlibRequestsSession(
        client_id, secret, token_endpoint_auth_method=method, **extra
    ) as session:
        session.register_compliance_hook("access_token_response", recorder)
        token: dict[str, Any] = session.fetch_token(url, grant_type="client_credentials")
    return dict(token)


def authlib_httpx_fetch(
    url: str, client_id: str, secret: str, method: str, recorder: ResponseRecorder, **extra: str
) -> dict[str, Any]:
    with AuthlibHttpxClient(
        client_id, secret, token_endpoint_auth_method=method, timeout=10, **extra
    ) as client:
        client.register_compliance_hook("access_token_response", recorder)
        token: dict[str, Any] = client.fetch_token(url, grant_type="client_credentials")
    return dict(token)


async def authlib_async_fetch(
    url: str, client_id: str, secret: str, method: str, recorder: ResponseRecorder, **extra: str
) -> dict[str, Any]:
    async with AsyncOAuth2Client(
        client_id, secret, token_endpoint_auth_method=method, timeout=10, **extra
    ) as client:
        client.register_compliance_hook("access_token_response", recorder)
        token: dict[str, Any] = await client.fetch_token(url, grant_type="client_credentials")
    return dict(token)


Fetch = Callable[..., Any]
AUTHLIB_CLIENTS: dict[str, tuple[Fetch, type[Exception]]] = {
    "requests": (authlib_requests_fetch, RequestsOAuthError),
    "httpx": (authlib_httpx_fetch, HttpxOAuthError),
    "httpx_async": (authlib_async_fetch, HttpxOAuthError),
}


async def authlib_fetch(
    flavour: str,
    url: str,
    client_id: str,
    secret: str,
    method: str,
    recorder: ResponseRecorder,
    **extra: str,
) -> dict[str, Any]:
    fetch, _ = AUTHLIB_CLIENTS[flavour]
    if asyncio.iscoroutinefunction(fetch):
        result: dict[str, Any] = await fetch(url, client_id, secret, method, recorder, **extra)
        return result
    return await asyncio.to_thread(fetch, url, client_id, secret, method, recorder, **extra)


def sent_request_used(method: str, response: Response) -> None:
    """The library really authenticated the way it was configured to."""
    request = response.request
    body: object = request.content if isinstance(request, httpx.Request) else request.body
    if isinstance(body, str):
        body = body.encode()
    assert body is None or isinstance(body, bytes), type(body)
    body_bytes = body or b""
    authorization = str(request.headers.get("Authorization", ""))
    if method == "client_secret_basic":
        assert authorization.startswith("Basic ")
        assert b"client_secret=" not in body_bytes
    else:
        assert authorization == ""
        assert b"client_secret=" in body_bytes
        assert b"client_id=" in body_bytes


@pytest.mark.parametrize("method", AUTH_METHODS)
@pytest.mark.parametrize("flavour", list(AUTHLIB_CLIENTS))
async def test_authlib_gets_a_real_token_and_a_wrong_secret_is_invalid_client(
    bridge: Bridge, flavour: str, method: str
) -> None:
    shop = await bridge.harness.shop("authlib")
    recorder = ResponseRecorder()
    token = await authlib_fetch(
        flavour, token_url(bridge), shop.service_id, shop.service_secret, method, recorder
    )
    sent_request_used(method, recorder.last)
    await assert_real_service_token(bridge, shop, token)
    # No scope asked: every scope the client was granted, then the tenant.
    assert token["scope"] == f"catalog.read catalog.write orders.read tenant={shop.tenant}"

    _, error_class = AUTHLIB_CLIENTS[flavour]
    with pytest.raises(error_class) as raised:
        await authlib_fetch(
            flavour, token_url(bridge), shop.service_id, WRONG_SECRET, method, recorder
        )
    assert getattr(raised.value, "error", None) == "invalid_client"
    sent_request_used(method, recorder.last)
    assert_invalid_client_response(recorder.last)


@pytest.mark.parametrize("flavour", list(AUTHLIB_CLIENTS))
async def test_authlib_scope_request_grants_only_that_scope(bridge: Bridge, flavour: str) -> None:
    shop = await bridge.harness.shop("authscope")
    recorder = ResponseRecorder()
    token = await authlib_fetch(
        flavour,
        token_url(bridge),
        shop.service_id,
        shop.service_secret,
        "client_secret_basic",
        recorder,
        scope="catalog.read",
    )
    assert token["scope"] == f"catalog.read tenant={shop.tenant}"
    await assert_real_service_token(bridge, shop, token)
    introspected = await bridge.harness.introspect(token["access_token"])
    assert introspected.scope.split() == ["catalog.read", f"tenant={shop.tenant}"]


# --- through discovery (RFC 8414): the endpoints the metadata names -------------------------


METADATA_PATH = "/.well-known/oauth-authorization-server"


@pytest.fixture
def settings_overrides(bridge_url: str) -> dict[str, object]:
    """The issuer is the bridge's own URL, so the metadata names endpoints a client can reach."""
    return {"issuer": bridge_url}


def authlib_discovery_run(
    flavour: str, base_url: str, client_id: str, secret: str, method: str
) -> dict[str, Any]:
    """With Authlib's requests session or httpx client: the metadata, a token from the token
    endpoint it names, introspection, revocation, introspection again."""
    session_class = AuthlibRequestsSession if flavour == "requests" else AuthlibHttpxClient
    with session_class(
        client_id,
        secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        timeout=10,
    ) as session:
        discovered = session.request("GET", f"{base_url}{METADATA_PATH}", withhold_token=True)
        metadata = discovered.json()
        token_endpoint = metadata["token_endpoint"]
        token = dict(session.fetch_token(token_endpoint, grant_type="client_credentials"))
        url, access_token = metadata["introspection_endpoint"], token["access_token"]
        before = session.introspect_token(url, access_token).json()
        revoked = session.revoke_token(metadata["revocation_endpoint"], access_token)
        after = session.introspect_token(url, access_token).json()
    return {
        "metadata": metadata,
        "token": token,
        "before": before,
        "revoked": revoked.status_code,
        "after": after,
    }


async def authlib_async_discovery_run(
    base_url: str, client_id: str, secret: str, method: str
) -> dict[str, Any]:
    async with AsyncOAuth2Client(
        client_id,
        secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        timeout=10,
    ) as client:
        discovered = await client.request("GET", f"{base_url}{METADATA_PATH}", withhold_token=True)
        metadata = discovered.json()
        token = dict(
            await client.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
        )
        url, access_token = metadata["introspection_endpoint"], token["access_token"]
        before = (await client.introspect_token(url, access_token)).json()
        revoked = await client.revoke_token(metadata["revocation_endpoint"], access_token)
        after = (await client.introspect_token(url, access_token)).json()
    return {
        "metadata": metadata,
        "token": token,
        "before": before,
        "revoked": revoked.status_code,
        "after": after,
    }


@pytest.mark.parametrize("method", AUTH_METHODS)
@pytest.mark.parametrize("flavour", list(AUTHLIB_CLIENTS))
async def test_authlib_through_discovery_gets_introspects_and_revokes(
    bridge: Bridge, flavour: str, method: str
) -> None:
    shop = await bridge.harness.shop("authdisc")
    if flavour == "httpx_async":
        run = await authlib_async_discovery_run(
            bridge.base_url, shop.service_id, shop.service_secret, method
        )
    else:
        run = await asyncio.to_thread(
            authlib_discovery_run,
            flavour,
            bridge.base_url,
            shop.service_id,
            shop.service_secret,
            method,
        )
    assert run["metadata"]["token_endpoint"] == f"{bridge.base_url}/oauth2/token"
    token = run["token"]
    # The standard endpoint's answer: no empty refresh token for Authlib to store.
    assert "refresh_token" not in token and "refresh_token_expires_in" not in token
    assert run["before"]["active"] is True
    assert run["before"]["client_id"] == shop.service_id
    assert run["revoked"] == 200
    assert run["after"] == {"active": False}
    assert not (await bridge.harness.introspect(token["access_token"])).active


def requests_oauthlib_discovery_fetch(
    base_url: str, client_id: str, secret: str, *, in_body: bool, recorder: ResponseRecorder
) -> dict[str, Any]:
    with requests.get(f"{base_url}{METADATA_PATH}", timeout=10) as response:
        token_endpoint = response.json()["token_endpoint"]
    return requests_oauthlib_fetch(
        token_endpoint, client_id, secret, in_body=in_body, recorder=recorder
    )


@pytest.mark.parametrize("in_body", [True, False], ids=["secret_in_body", "http_basic"])
async def test_requests_oauthlib_through_discovery_gets_a_real_token(
    bridge: Bridge, in_body: bool
) -> None:
    shop = await bridge.harness.shop("roauthdisc")
    recorder = ResponseRecorder()
    token = await asyncio.to_thread(
        requests_oauthlib_discovery_fetch,
        bridge.base_url,
        shop.service_id,
        shop.service_secret,
        in_body=in_body,
        recorder=recorder,
    )
    assert str(recorder.last.request.url).endswith("/oauth2/token")
    sent_request_used("client_secret_post" if in_body else "client_secret_basic", recorder.last)
    assert "refresh_token" not in token
    await assert_real_service_token(bridge, shop, token)
