"""Standard OAuth clients we did not write, in Node.js, find and use the service given nothing but
its issuer URL and a service client's credentials (tests/js/standard_clients.mjs): openid-client
6 and oauth4webapi 3 each discover it (RFC 8414), get a service token with client_credentials
through `client_secret_basic` and through `client_secret_post`, introspect it (RFC 7662),
revoke it (RFC 7009) and see it inactive; jose verifies a customer's SaaS token against the
discovered JWKS with the discovered issuer and the SaaS audience, and refuses another audience.

The issuer is the bridge's own URL (`bridge_url`): a discovering client checks that the metadata
names the issuer it asked, and follows the endpoints the metadata names.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.integration.http.conftest import Bridge
from tests.support.harness import Shop
from tests.support.outside_tools import JS_DIR, need_node

SCRIPT = JS_DIR / "standard_clients.mjs"
LIBRARIES = ("openid-client", "oauth4webapi")
METHODS = ("client_secret_basic", "client_secret_post")
# Only a hung child process stops the test early; a slow machine never gets near this.
HUNG_SECONDS = 300


@pytest.fixture
def settings_overrides(bridge_url: str) -> dict[str, object]:
    return {"issuer": bridge_url}


async def run_standard_clients(node: str, **given: object) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        cwd=JS_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(
        process.communicate(json.dumps(given).encode()), HUNG_SECONDS
    )
    assert process.returncode == 0, stderr.decode()
    report: dict[str, Any] = json.loads(stdout)
    return report


def assert_authenticated_as(method: str, requests: list[dict[str, Any]], base: str) -> None:
    """Every POST (token, introspection, revocation) used the configured method, and only it."""
    posts = [request for request in requests if request["method"] == "POST"]
    assert sorted(request["path"] for request in posts) == sorted(
        ["/oauth2/token", "/oauth/introspect", "/oauth/revoke", "/oauth/introspect"]
    ), requests
    for request in posts:
        assert request["basic"] is (method == "client_secret_basic"), request
        assert request["secret_in_body"] is (method == "client_secret_post"), request
    discovery = [request["path"] for request in requests if request["method"] == "GET"]
    assert discovery == ["/.well-known/oauth-authorization-server"], base


async def test_openid_client_oauth4webapi_and_jose_use_the_discovered_service(
    bridge: Bridge, bridge_url: str
) -> None:
    node = need_node()
    shop: Shop = await bridge.harness.shop("stdclients")
    login = await bridge.customer_login(shop)
    settings = bridge.harness.core.settings
    assert settings.issuer == bridge_url

    report = await run_standard_clients(
        node,
        issuer=bridge_url,
        client_id=shop.service_id,
        client_secret=shop.service_secret,
        saas_token=login["saas_token"],
        audience=settings.saas_audience,
        now=bridge.harness.clock.now(),
    )

    scope = f"catalog.read catalog.write orders.read tenant={shop.tenant}"
    tokens = set()
    for library in LIBRARIES:
        for method in METHODS:
            run = report[library][method]
            assert run["token_endpoint"] == f"{bridge_url}/oauth2/token"
            token = run["token"]
            assert token["token_type"] == "bearer"  # both libraries lower-case it
            assert token["expires_in"] == 14400
            assert token["scope"] == scope
            assert token["has_refresh_token"] is False
            assert "refresh_token_expires_in" not in token["fields"]
            assert run["introspected"]["active"] is True
            assert run["introspected"]["client_id"] == shop.service_id
            assert run["introspected"]["kind"] == "service"
            assert run["introspected"]["tenant"] == shop.tenant
            assert run["introspected"]["scope"] == scope
            assert run["introspected"]["iss"] == bridge_url
            assert run["after_revocation"] == {"active": False}
            assert_authenticated_as(method, run["requests"], f"{library} {method}")
            # The service itself agrees (over gRPC): the token the library revoked is inactive.
            access_token = token["access_token"]
            tokens.add(access_token)
            assert not (await bridge.harness.introspect(access_token)).active
    assert len(tokens) == len(LIBRARIES) * len(METHODS)

    verified = report["jose"]
    assert verified["jwks_uri"] == f"{bridge_url}/.well-known/jwks.json"
    assert verified["issuer"] == bridge_url
    assert verified["alg"] == "ES256" and verified["kid"]
    assert verified["claims"] == {
        "iss": bridge_url,
        "aud": settings.saas_audience,
        "sub": shop.customer_id,
        "sid": login["session_id"],
        "tenant": shop.tenant,
    }
    assert verified["other_audience"] == "ERR_JWT_CLAIM_VALIDATION_FAILED"
