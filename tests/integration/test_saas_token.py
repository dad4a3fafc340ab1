"""The SaaS token (customer login's JWT) verifies with PyJWT using only the published JWKS, and
nothing else does: not `alg=none`, not HS256 keyed with the public key, not a wrong audience, not
an unknown `kid`, not an expired token, not a token signed by a retired key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import HMACAlgorithm
from jwt.types import Options

from server import admin
from tests.support.harness import Harness

REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti"]
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


class UnknownKid(jwt.InvalidTokenError):
    """The token's kid names no key of the JWKS."""


def published_keys(jwks: dict[str, Any]) -> dict[str, jwt.PyJWK]:
    """The JWKS as kid -> public key; refuses a JWKS that leaks private key material."""
    keys: dict[str, jwt.PyJWK] = {}
    for member in jwks["keys"]:
        leaked = PRIVATE_JWK_MEMBERS & set(member)
        assert not leaked, f"the JWKS publishes private key material: {sorted(leaked)}"
        keys[member["kid"]] = jwt.PyJWK(member)
    return keys


def verify(token: str, jwks: dict[str, Any], harness: Harness, **kwargs: Any) -> dict[str, Any]:
    """What a relying party does: pick the key by the header's kid, then verify ES256 only."""
    kid = jwt.get_unverified_header(token).get("kid")
    keys = published_keys(jwks)
    if kid not in keys:
        raise UnknownKid(f"kid {kid!r} is not in the JWKS")
    settings = harness.core.settings
    extra_options: Options = kwargs.pop("options", {})
    options: Options = {"require": REQUIRED, **extra_options}
    return jwt.decode(
        token,
        key=keys[kid],
        algorithms=["ES256"],
        audience=kwargs.pop("audience", settings.saas_audience),
        issuer=settings.issuer,
        options=options,
        **kwargs,
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(signature)}"


def hs256_with_public_pem(header: dict[str, Any], claims: dict[str, Any], pem: bytes) -> str:
    """The classic key-confusion forgery: HMAC-SHA256 keyed with the public key's PEM."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


async def customer_saas_token(harness: Harness, tenant: str = "acme") -> tuple[Any, Any]:
    shop = await harness.shop(tenant)
    response = await harness.customer(shop)
    assert response.saas_token, "customer login returned no saas_token"
    return shop, response


async def test_saas_token_verifies_with_only_the_published_key(harness: Harness) -> None:
    shop, response = await customer_saas_token(harness)
    jwks = await harness.core.keys.jwks()
    header = jwt.get_unverified_header(response.saas_token)
    assert header["alg"] == "ES256"
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}

    claims = verify(response.saas_token, jwks, harness)

    settings = harness.core.settings
    assert claims["iss"] == settings.issuer
    assert claims["aud"] == settings.saas_audience
    assert claims["sub"] == shop.customer_id
    assert claims["tenant"] == shop.tenant
    assert claims["sid"] == response.session_id
    assert claims["exp"] - claims["iat"] == 14400
    assert abs(claims["iat"] - harness.clock.now()) <= 1
    assert isinstance(claims["jti"], str) and claims["jti"]


async def test_each_login_gets_its_own_jti(harness: Harness) -> None:
    shop, first = await customer_saas_token(harness)
    second = await harness.customer(shop)
    jwks = await harness.core.keys.jwks()
    assert (
        verify(first.saas_token, jwks, harness)["jti"]
        != (verify(second.saas_token, jwks, harness)["jti"])
    )


async def test_signing_is_deterministic_and_verifies_as_plain_es256(harness: Harness) -> None:
    """The same claims sign to the same token (so a retried refresh answers with the SaaS token
    it answered first), shaped as PyJWT's own `jwt.encode` shapes it, and verified by a relying
    party as any ES256 token."""
    _, response = await customer_saas_token(harness)
    claims = verify(response.saas_token, await harness.core.keys.jwks(), harness)
    again = await harness.core.keys.sign(claims)
    assert again == await harness.core.keys.sign(dict(claims))
    assert verify(again, await harness.core.keys.jwks(), harness) == claims
    header = jwt.get_unverified_header(again)
    key = ec.generate_private_key(ec.SECP256R1())
    by_pyjwt = jwt.encode(claims, key, algorithm="ES256", headers={"kid": header["kid"]})
    assert again.rsplit(".", 1)[0] == by_pyjwt.rsplit(".", 1)[0]
    # Randomised ECDSA (PyJWT's default) would not sign the same twice.
    assert jwt.encode(claims, key, algorithm="ES256") != jwt.encode(claims, key, algorithm="ES256")


async def test_alg_none_is_rejected(harness: Harness) -> None:
    _, response = await customer_saas_token(harness)
    jwks = await harness.core.keys.jwks()
    claims = verify(response.saas_token, jwks, harness)
    kid = jwt.get_unverified_header(response.saas_token)["kid"]

    unsigned = hand_made({"alg": "none", "typ": "JWT", "kid": kid}, claims, b"")
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(unsigned, jwks, harness)
    # PyJWT's own encoding of an unsigned token as well.
    # PyJWT's annotation of `key` leaves out None, the one key its "none" algorithm takes.
    library_unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": kid})  # type: ignore[arg-type]
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(library_unsigned, jwks, harness)


async def test_hs256_signed_with_the_public_key_is_rejected(harness: Harness) -> None:
    _, response = await customer_saas_token(harness)
    jwks = await harness.core.keys.jwks()
    claims = verify(response.saas_token, jwks, harness)
    kid = jwt.get_unverified_header(response.saas_token)["kid"]
    public_key = published_keys(jwks)[kid].key
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    forged = hs256_with_public_pem({"alg": "HS256", "typ": "JWT", "kid": kid}, claims, pem)
    # The forgery is well made: an HS256 check keyed with the PEM accepts its signature.
    signing_input, _, signature = forged.rpartition(".")
    hs256 = HMACAlgorithm(HMACAlgorithm.SHA256)
    assert hs256.verify(signing_input.encode(), pem, base64.urlsafe_b64decode(signature + "=="))
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(forged, jwks, harness)


async def test_wrong_audience_is_rejected(harness: Harness) -> None:
    _, response = await customer_saas_token(harness)
    jwks = await harness.core.keys.jwks()
    # The genuine token, checked by a relying party that expects another audience.
    with pytest.raises(jwt.InvalidAudienceError):
        verify(response.saas_token, jwks, harness, audience="some-other-api")
    # A token genuinely signed by the service's key, but for another audience.
    claims = verify(response.saas_token, jwks, harness)
    other = await harness.core.keys.sign({**claims, "aud": "some-other-api"})
    with pytest.raises(jwt.InvalidAudienceError):
        verify(other, jwks, harness)


async def test_unknown_kid_is_rejected(harness: Harness) -> None:
    _, response = await customer_saas_token(harness)
    jwks = await harness.core.keys.jwks()
    claims = verify(response.saas_token, jwks, harness)

    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(claims, stranger, algorithm="ES256", headers={"kid": "not-a-published-kid"})
    with pytest.raises(UnknownKid):
        verify(forged, jwks, harness)
    # And no published key would accept its signature either.
    for key in published_keys(jwks).values():
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(forged, key=key, algorithms=["ES256"], audience=claims["aud"])

    # The genuine signature under a kid the JWKS does not publish.
    _, payload, signature = response.saas_token.split(".")
    relabelled = b64url(
        json.dumps({**jwt.get_unverified_header(response.saas_token), "kid": "x" * 43}).encode()
    )
    with pytest.raises(UnknownKid):
        verify(f"{relabelled}.{payload}.{signature}", jwks, harness)


async def test_expired_token_is_rejected(harness: Harness) -> None:
    # Log in "five hours ago": the 4-hour SaaS token the service issued then has expired now.
    harness.clock.advance(-5 * 3600)
    _, response = await customer_saas_token(harness)
    harness.clock.advance(5 * 3600)
    jwks = await harness.core.keys.jwks()

    claims = verify(response.saas_token, jwks, harness, options={"verify_exp": False})
    assert claims["exp"] < time.time()
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(response.saas_token, jwks, harness)


async def test_rotation_keeps_old_tokens_verifiable_until_the_key_is_retired(
    harness: Harness,
) -> None:
    shop, before = await customer_saas_token(harness)
    old_kid = jwt.get_unverified_header(before.saas_token)["kid"]

    rotated = await admin.rotate_signing_key(harness.core)
    assert rotated.kid != old_kid

    # Published at once, but the old key keeps signing until verifiers that cached the key set
    # have had time to learn the new one.
    published = {key["kid"] for key in (await harness.core.keys.jwks())["keys"]}
    assert published == {old_kid, rotated.kid}
    meanwhile = await harness.customer(shop)
    assert jwt.get_unverified_header(meanwhile.saas_token)["kid"] == old_kid
    harness.clock.advance(harness.core.settings.signing_key_activation_seconds - 1)
    almost = await harness.customer(shop)
    assert jwt.get_unverified_header(almost.saas_token)["kid"] == old_kid
    harness.clock.advance(1)
    # The test clock now runs ahead of the wall clock the verifier uses.
    ahead = {"leeway": harness.core.settings.signing_key_activation_seconds + 5}

    after = await harness.customer(shop)
    new_kid = jwt.get_unverified_header(after.saas_token)["kid"]
    assert new_kid == rotated.kid
    assert new_kid != old_kid

    jwks = await harness.core.keys.jwks()
    assert {old_kid, new_kid} <= {key["kid"] for key in jwks["keys"]}
    assert verify(after.saas_token, jwks, harness, **ahead)["sub"] == shop.customer_id
    # The old key is now "verifying": tokens it signed still verify.
    assert verify(before.saas_token, jwks, harness)["sub"] == shop.customer_id

    await admin.retire_signing_key(harness.core, old_kid)

    jwks = await harness.core.keys.jwks()
    kids = {key["kid"] for key in jwks["keys"]}
    assert old_kid not in kids
    assert new_kid in kids
    with pytest.raises(UnknownKid):
        verify(before.saas_token, jwks, harness)
    assert verify(after.saas_token, jwks, harness, **ahead)["sub"] == shop.customer_id
