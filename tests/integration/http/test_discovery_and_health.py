"""Discovery and health over the real bridge: the JWKS is the key ring's and verifies the SaaS
tokens the bridge hands out, the RFC 8414 metadata names this issuer and endpoints this bridge
serves, `/healthz` answers while the process runs, and `/readyz` answers 503 while draining or
while the store (in-process) or the remote gRPC server (channel) cannot be reached."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from http_bridge.access_log import AccessLog
from http_bridge.app import build_app, context_of
from http_bridge.backend import TokenBackend
from http_bridge.channel import ChannelBackend
from http_bridge.server import start_http
from launcher.in_process import InProcessBackend
from server import admin
from server.settings import Settings
from tests.integration.http.conftest import Bridge
from tests.support.harness import Harness
from tests.support.http_clients import async_http_client

JWK_FIELDS = ("kty", "crv", "x", "y", "kid", "use", "alg")
READY = {"status": "ready"}
UNAVAILABLE = {"status": "unavailable"}


@dataclasses.dataclass
class Served:
    """A bridge of this module's own, so that a test can reach the app's context."""

    app: AccessLog
    http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def serve(backend: TokenBackend, settings: Settings) -> AsyncIterator[Served]:
    app = build_app(backend, settings)
    running = await start_http(app, "127.0.0.1:0", grace_seconds=1)
    client = async_http_client(base_url=f"http://127.0.0.1:{running.port}", timeout=30)
    try:
        yield Served(app=app, http=client)
    finally:
        await client.aclose()
        await running.stop()
        await backend.close()


def backend_for(name: str, harness: Harness) -> TokenBackend:
    if name == "in_process":
        return InProcessBackend(harness.core)
    return ChannelBackend(harness.target)


@pytest.fixture(params=["in_process", "channel"])
async def served(request: pytest.FixtureRequest, harness: Harness) -> AsyncIterator[Served]:
    async with serve(backend_for(request.param, harness), harness.core.settings) as bridge:
        yield bridge


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def database_replaced_by_a_directory(db_path: Path) -> Iterator[None]:
    """The SQLite file (and its WAL companions) moved away and a directory in its place, so no
    new connection can open it; put back afterwards."""
    moved: list[tuple[Path, Path]] = []
    for suffix in ("", "-wal", "-shm"):
        path = db_path.with_name(db_path.name + suffix)
        if path.exists():
            aside = path.with_name(path.name + ".aside")
            path.rename(aside)
            moved.append((aside, path))
    db_path.mkdir()
    try:
        yield
    finally:
        db_path.rmdir()
        for aside, path in moved:
            aside.rename(path)


# --- JWKS ------------------------------------------------------------------------------------


async def test_jwks_is_the_key_rings_public_keys(bridge: Bridge) -> None:
    response = await bridge.http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    expected = await bridge.harness.core.keys.jwks()
    assert expected["keys"], "the harness has an active signing key"
    assert response.json() == {
        "keys": [{field: key[field] for field in JWK_FIELDS} for key in expected["keys"]]
    }
    for key in response.json()["keys"]:
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")


async def test_jwks_verifies_the_saas_token_of_a_customer_login(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("jwksshop")
    login = await bridge.customer_login(shop)
    key_set = jwt.PyJWKSet.from_dict((await bridge.http.get("/.well-known/jwks.json")).json())
    kid = jwt.get_unverified_header(login["saas_token"])["kid"]
    key = next(key for key in key_set.keys if key.key_id == kid)
    claims = jwt.decode(
        login["saas_token"],
        key=key,
        algorithms=["ES256"],
        audience=bridge.harness.core.settings.saas_audience,
        issuer=bridge.harness.core.settings.issuer,
        options={"verify_exp": False, "verify_iat": False},  # the harness's clock is manual
    )
    assert claims["sub"] == shop.customer_id
    assert claims["sid"] == login["session_id"]
    assert claims["tenant"] == "jwksshop"


async def test_jwks_shows_a_rotated_key_beside_the_previous_one(bridge: Bridge) -> None:
    before = {
        key["kid"] for key in (await bridge.http.get("/.well-known/jwks.json")).json()["keys"]
    }
    rotated = await admin.rotate_signing_key(bridge.harness.core)
    after = {key["kid"] for key in (await bridge.http.get("/.well-known/jwks.json")).json()["keys"]}
    assert rotated.kid not in before
    assert after == before | {rotated.kid}


# --- RFC 8414 metadata -----------------------------------------------------------------------


async def test_metadata_names_the_issuer_and_its_endpoints(bridge: Bridge) -> None:
    issuer = bridge.harness.core.settings.issuer
    response = await bridge.http.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    body = response.json()
    assert body["issuer"] == issuer
    # The RFC 6749 token endpoint; Emporix clients keep calling /oauth/token by name.
    assert body["token_endpoint"] == f"{issuer}/oauth2/token"
    assert body["introspection_endpoint"] == f"{issuer}/oauth/introspect"
    assert body["revocation_endpoint"] == f"{issuer}/oauth/revoke"
    assert body["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert body["grant_types_supported"] == ["client_credentials"]
    # REQUIRED by RFC 8414 section 2; "none" claims no authorization endpoint capability.
    assert body["response_types_supported"] == ["none"]
    assert "authorization_endpoint" not in body
    assert body["scopes_supported"] == ["tokenservice.admin", "tokenservice.platform_admin"]
    assert set(body["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }
    for endpoint in ("introspection", "revocation"):
        assert set(body[f"{endpoint}_endpoint_auth_methods_supported"]) == {
            "client_secret_basic",
            "client_secret_post",
            "none",
        }


async def test_metadata_endpoints_are_served_by_this_bridge(bridge: Bridge) -> None:
    """Each advertised endpoint, taken at its path, answers here as what it claims to be."""
    shop = await bridge.harness.shop("metashop")
    body = (await bridge.http.get("/.well-known/oauth-authorization-server")).json()

    def path(url: str) -> str:
        return urlsplit(url).path

    issued = await bridge.http.post(
        path(body["token_endpoint"]),
        data={"grant_type": "client_credentials"},
        auth=(shop.service_id, shop.service_secret),
    )
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    seen = await bridge.http.post(
        path(body["introspection_endpoint"]),
        data={"token": token},
        auth=(shop.service_id, shop.service_secret),
    )
    assert seen.json()["active"] is True
    revoked = await bridge.http.post(
        path(body["revocation_endpoint"]),
        data={"token": token},
        auth=(shop.service_id, shop.service_secret),
    )
    assert revoked.status_code == 200
    assert not (await bridge.harness.introspect(token)).active
    keys = await bridge.http.get(path(body["jwks_uri"]))
    assert keys.json()["keys"]
    documentation = await bridge.http.get(path(body["service_documentation"]))
    assert documentation.status_code == 200
    assert "openapi" in documentation.json()


@pytest.mark.parametrize("settings_overrides", [{"issuer": "https://tokens.example/"}])
async def test_metadata_issuer_is_identical_to_the_tokens_iss(bridge: Bridge) -> None:
    """RFC 8414 section 3.3: the metadata's issuer is exactly the one in the tokens."""
    shop = await bridge.harness.shop("slashiss")
    login = await bridge.customer_login(shop)
    token_iss = jwt.decode(login["saas_token"], options={"verify_signature": False})["iss"]
    introspected = await bridge.http.post(
        "/oauth/introspect",
        data={"token": login["access_token"]},
        auth=(shop.service_id, shop.service_secret),
    )
    metadata = (await bridge.http.get("/.well-known/oauth-authorization-server")).json()
    assert token_iss == introspected.json()["iss"] == "https://tokens.example/"
    assert metadata["issuer"] == token_iss
    assert metadata["token_endpoint"] == "https://tokens.example/oauth2/token"


@pytest.mark.parametrize("settings_overrides", [{"issuer": "https://tokens.example"}])
async def test_authlib_validates_the_metadata(bridge: Bridge) -> None:
    """authlib's RFC 8414 validator (every REQUIRED member, array types, https URLs: hence the
    https issuer here) accepts the document as served."""
    response = await bridge.http.get("/.well-known/oauth-authorization-server")
    metadata = AuthorizationServerMetadata(response.json())
    metadata.validate()
    assert metadata.response_types_supported == ["none"]
    assert metadata.token_endpoint == "https://tokens.example/oauth2/token"


# --- health ----------------------------------------------------------------------------------


async def test_healthz_and_readyz_answer_ok(bridge: Bridge) -> None:
    health = await bridge.http.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = await bridge.http.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, READY)
    assert ready.headers["Cache-Control"] == "no-store"


async def test_readyz_is_503_while_draining_and_calls_still_succeed(
    served: Served, harness: Harness
) -> None:
    shop = await harness.shop("draining")
    context = context_of(served.app)
    context.draining = True
    ready = await served.http.get("/readyz")
    assert (ready.status_code, ready.json()) == (503, UNAVAILABLE)
    assert ready.headers["Cache-Control"] == "no-store"
    health = await served.http.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    # Draining only tells balancers to stop sending; what still arrives is served.
    issued = await served.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(shop.service_id, shop.service_secret),
    )
    assert issued.status_code == 200, issued.text
    context.draining = False
    assert (await served.http.get("/readyz")).json() == READY


@pytest.mark.parametrize("database_kind", ["sqlite"])  # replaces the SQLite file
async def test_readyz_is_503_while_the_store_cannot_be_opened_then_recovers(
    harness: Harness,
) -> None:
    async with serve(InProcessBackend(harness.core), harness.core.settings) as served:
        assert (await served.http.get("/readyz")).json() == READY
        await harness.core.store.close()  # drop pooled connections: the next one must open
        with database_replaced_by_a_directory(harness.db_path):
            ready = await served.http.get("/readyz")
            assert (ready.status_code, ready.json()) == (503, UNAVAILABLE)
            health = await served.http.get("/healthz")
            assert health.status_code == 200
        ready = await served.http.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, READY)


@pytest.mark.parametrize("database_kind", ["sqlite"])  # replaces the SQLite file
async def test_channel_readyz_is_503_while_the_remote_store_cannot_be_opened(
    harness: Harness,
) -> None:
    async with serve(ChannelBackend(harness.target), harness.core.settings) as served:
        assert (await served.http.get("/readyz")).json() == READY
        await harness.core.store.close()
        with database_replaced_by_a_directory(harness.db_path):
            ready = await served.http.get("/readyz")
            assert (ready.status_code, ready.json()) == (503, UNAVAILABLE)


async def test_channel_readyz_is_503_when_the_remote_server_is_unreachable(
    harness: Harness,
) -> None:
    backend = ChannelBackend(f"127.0.0.1:{closed_port()}", timeout_seconds=2)
    async with serve(backend, harness.core.settings) as served:
        ready = await served.http.get("/readyz")
        assert (ready.status_code, ready.json()) == (503, UNAVAILABLE)
        health = await served.http.get("/healthz")
        assert health.status_code == 200
        # A call that needs the server is 503 with a retry hint, in the OAuth shape.
        issued = await served.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("some-client", "some-secret"),
        )
        assert issued.status_code == 503
        assert issued.json()["error"] == "temporarily_unavailable"
        assert int(issued.headers["Retry-After"]) >= 1


async def test_channel_readyz_is_503_when_the_remote_server_drains(harness: Harness) -> None:
    async with serve(ChannelBackend(harness.target), harness.core.settings) as served:
        assert (await served.http.get("/readyz")).json() == READY
        await harness.running.health.enter_graceful_shutdown()
        ready = await served.http.get("/readyz")
        assert (ready.status_code, ready.json()) == (503, UNAVAILABLE)
