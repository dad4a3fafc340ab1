"""A resource server verifies SaaS tokens the way real ones do: PyJWT's `PyJWKClient` pointed at
the bridge's `/.well-known/jwks.json`, with the algorithm, audience, issuer and required claims
pinned. The claims name the customer, the session and the tenant; a key rotation is picked up by
the same verifier (an unknown kid makes it fetch the key set again) while tokens signed before it
keep verifying; once the old key is retired, a verifier that fetches the key set no longer
accepts them. The JWKS itself carries public members only, with kid, alg and use, and a
Cache-Control header.

PyJWKClient is synchronous (urllib), and the bridge serves in the test's event loop, so every
verification runs in a thread.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

import jwt
import pytest
from joserfc.jwk import ECKey

from server import admin
from server.records import KeyStatus
from tests.integration.http.conftest import Bridge

REQUIRED_CLAIMS = ["iss", "aud", "sub", "tenant", "sid", "iat", "exp", "jti"]
PRIVATE_EC_MEMBERS = {"d"}
PRIVATE_RSA_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth"}


class CountingJWKClient(jwt.PyJWKClient):
    """PyJWKClient as is, counting its fetches of the key set (to see the refetch happen).

    `cooldown_duration=0`: PyJWT (2.15 here) waits `cooldown_duration` seconds (default
    30) after ANY successful fetch before it fetches again for an unknown kid, so with the
    default a verifier that fetched the key set moments before a rotation rejects the new kid
    until the cooldown ends. The test turns the cooldown off to see the unknown-kid refetch
    without sleeping; the key set cache (`cache_jwk_set`, 300 s lifespan) stays on.
    """

    def __init__(self, uri: str, **options: Any) -> None:
        if "cooldown_duration" in inspect.signature(jwt.PyJWKClient).parameters:
            options["cooldown_duration"] = 0  # (older PyJWT has no cooldown)
        super().__init__(uri, **options)
        self.fetches = 0

    def fetch_data(self) -> Any:
        self.fetches += 1
        return super().fetch_data()


def jwks_url(bridge: Bridge) -> str:
    return f"{bridge.base_url}/.well-known/jwks.json"


def verify_sync(
    client: jwt.PyJWKClient, token: str, audience: str, issuer: str, leeway: int = 0
) -> dict[str, Any]:
    signing_key = client.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        signing_key.key,
        algorithms=["ES256"],
        audience=audience,
        issuer=issuer,
        options={"require": REQUIRED_CLAIMS},
        leeway=leeway,
    )
    return claims


async def verify(bridge: Bridge, client: jwt.PyJWKClient, token: str) -> dict[str, Any]:
    settings = bridge.harness.core.settings
    # The test's manual clock may run ahead of the wall clock PyJWT checks iat against.
    ahead = max(0, int(bridge.harness.clock.now() - time.time()) + 5)
    return await asyncio.to_thread(
        verify_sync, client, token, settings.saas_audience, settings.issuer, ahead
    )


def kid_of(token: str) -> str:
    kid = jwt.get_unverified_header(token)["kid"]
    assert isinstance(kid, str) and kid
    return kid


async def jwks_kids(bridge: Bridge) -> list[str]:
    response = await bridge.http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return [key["kid"] for key in response.json()["keys"]]


async def test_resource_server_verifies_a_saas_token_through_the_jwks(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("jwksverify")
    anonymous = await bridge.anonymous_login(shop)
    login = await bridge.customer_login(shop, anonymous["access_token"])
    verifier = CountingJWKClient(jwks_url(bridge))

    claims = await verify(bridge, verifier, login["saas_token"])

    assert claims["sub"] == shop.customer_id
    assert claims["sid"] == login["session_id"] == anonymous["sessionId"]
    assert claims["tenant"] == shop.tenant
    assert claims["aud"] == bridge.harness.core.settings.saas_audience
    assert claims["iss"] == bridge.harness.core.settings.issuer
    assert claims["exp"] > claims["iat"]
    assert verifier.fetches == 1
    # The deprecated twin is the same token.
    assert login["saasToken"] == login["saas_token"]


async def test_resource_server_rejects_a_saas_token_for_another_audience_or_tampered(
    bridge: Bridge,
) -> None:
    shop = await bridge.harness.shop("jwksreject")
    token = (await bridge.customer_login(shop))["saas_token"]
    settings = bridge.harness.core.settings
    verifier = CountingJWKClient(jwks_url(bridge))

    with pytest.raises(jwt.InvalidAudienceError):
        await asyncio.to_thread(verify_sync, verifier, token, "another-api", settings.issuer)
    with pytest.raises(jwt.InvalidIssuerError):
        await asyncio.to_thread(
            verify_sync, verifier, token, settings.saas_audience, "https://elsewhere.example"
        )
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(jwt.InvalidSignatureError):
        await verify(bridge, verifier, f"{header}.{payload}.{flipped}")


async def test_rotation_is_picked_up_and_retirement_ends_the_old_key(bridge: Bridge) -> None:
    harness = bridge.harness
    shop = await harness.shop("jwksrotate")
    before = (await bridge.customer_login(shop))["saas_token"]
    old_kid = kid_of(before)
    verifier = CountingJWKClient(jwks_url(bridge))
    assert (await verify(bridge, verifier, before))["sub"] == shop.customer_id
    assert verifier.fetches == 1

    rotated = await admin.rotate_signing_key(harness.core)
    # Published at once, but it signs only once verifiers have had time to learn it.
    assert sorted(await jwks_kids(bridge)) == sorted([old_kid, rotated.kid])
    meanwhile = (await bridge.customer_login(shop))["saas_token"]
    assert kid_of(meanwhile) == old_kid
    assert (await verify(bridge, verifier, meanwhile))["sub"] == shop.customer_id
    assert verifier.fetches == 1
    harness.clock.advance(harness.core.settings.signing_key_activation_seconds)
    after = (await bridge.customer_login(shop))["saas_token"]
    new_kid = kid_of(after)
    assert new_kid == rotated.kid
    assert new_kid != old_kid
    assert sorted(await jwks_kids(bridge)) == sorted([old_kid, new_kid])

    # The same verifier: the new kid is not in its cached key set, so it fetches again ...
    assert (await verify(bridge, verifier, after))["sub"] == shop.customer_id
    assert verifier.fetches == 2
    # ... and the old token still verifies: the old key is still published (verifying).
    assert (await verify(bridge, verifier, before))["sub"] == shop.customer_id
    assert verifier.fetches == 2

    retired = await admin.retire_signing_key(harness.core, old_kid)
    assert retired.status is KeyStatus.RETIRED
    assert await jwks_kids(bridge) == [new_kid]

    # The long-lived verifier still finds the old kid in the key set it cached (300 s
    # lifespan): PyJWKClient fetches again only for a kid it does not know, or when that
    # cache expires. So retirement reaches a verifier only when it next fetches the key set,
    # which a fresh client (or one with cache_jwk_set=False) does at once.
    assert (await verify(bridge, verifier, before))["sub"] == shop.customer_id
    assert verifier.fetches == 2

    for fresh in (
        CountingJWKClient(jwks_url(bridge)),
        CountingJWKClient(jwks_url(bridge), cache_jwk_set=False),
    ):
        with pytest.raises(jwt.PyJWKClientError, match="Unable to find a signing key"):
            await verify(bridge, fresh, before)
        assert (await verify(bridge, fresh, after))["sub"] == shop.customer_id
        assert fresh.fetches >= 1


async def test_jwks_publishes_public_keys_only_with_kid_alg_use(bridge: Bridge) -> None:
    await admin.rotate_signing_key(bridge.harness.core)  # two published keys
    response = await bridge.http.get("/.well-known/jwks.json")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    cache_control = response.headers.get("Cache-Control", "")
    assert "max-age=" in cache_control and "no-store" not in cache_control
    keys = response.json()["keys"]
    assert len(keys) == 2
    assert len({key["kid"] for key in keys}) == 2
    for key in keys:
        assert not PRIVATE_EC_MEMBERS & key.keys(), sorted(key)
        assert not PRIVATE_RSA_MEMBERS & key.keys(), sorted(key)
        assert key["kty"] == "EC"
        assert key["crv"] == "P-256"
        assert key["alg"] == "ES256"
        assert key["use"] == "sig"
        assert key["x"] and key["y"]
        # The kid is the RFC 7638 thumbprint, as an independent implementation computes it.
        assert key["kid"] == ECKey.import_key(key).thumbprint()
        # PyJWT accepts it as an ES256 verification key, public only.
        assert jwt.PyJWK(key).algorithm_name == "ES256"


async def test_jwks_verifies_every_stored_key_that_is_not_retired(bridge: Bridge) -> None:
    """The published set is exactly the active and verifying keys in the store."""
    core = bridge.harness.core
    (first,) = await admin.list_signing_keys(core)
    await admin.rotate_signing_key(core)
    await admin.rotate_signing_key(core)
    stored = await admin.list_signing_keys(core)
    bridge.harness.clock.advance(
        core.settings.signing_key_activation_seconds
    )  # first stops signing
    await admin.retire_signing_key(core, first.kid)

    published = set(await jwks_kids(bridge))
    expected = {
        record.kid
        for record in await admin.list_signing_keys(core)
        if record.status in (KeyStatus.ACTIVE, KeyStatus.VERIFYING)
    }
    assert published == expected
    assert first.kid not in published
    assert len(published) == len(stored) - 1
