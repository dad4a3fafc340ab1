"""Token exchange and social login against the in-memory store, with a manual clock and the
local provider's answers in place of the network (tests/support/local_idp.py): the rules of
server/identity_providers.py, server/provider_keys.py, server/outbound_http.py and the two
grants."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from server import admin, identity_provider_admin, introspection
from server.clock import ManualClock
from server.core import Core
from server.errors import (
    AccessDenied,
    IdentityProviderUnavailable,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
)
from server.grants import anonymous, social_login, token_exchange
from server.records import ClientKind, IdentityProviderRecord, IssuedTokens
from tests.support.cores import memory_core
from tests.support.local_idp import LocalIdp, new_key, pkce_pair

REDIRECT = "https://shop.example/callback"


@dataclasses.dataclass
class Setup:
    core: Core
    idp: LocalIdp

    @property
    def clock(self) -> ManualClock:
        assert isinstance(self.core.clock, ManualClock)
        return self.core.clock

    async def anonymous_token(self) -> str:
        return (await anonymous.issue(self.core, "shop", "front")).access_token

    async def exchange(self, token: str, **kwargs: Any) -> IssuedTokens:
        return await token_exchange.issue(
            self.core, "shop", token, await self.anonymous_token(), **kwargs
        )

    def token(self, who: str = "ann@shop.example", **claims: Any) -> str:
        return self.idp.token(who, now=int(self.clock.now()), **claims)

    async def configure(self, **changes: Any) -> IdentityProviderRecord:
        draft = IdentityProviderRecord(
            tenant="shop",
            name="default",
            issuer=self.idp.issuer,
            jwks_uri=self.idp.jwks_uri,
            audience=self.idp.audience,
            created_at=0,
            client_id=self.idp.client_id,
            client_secret=self.idp.client_secret,
            token_endpoint=self.idp.token_endpoint,
        )
        draft = dataclasses.replace(draft, **changes)
        return await identity_provider_admin.put_identity_provider(self.core, draft)


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    idp = LocalIdp(serve=False)
    core = await memory_core(
        http_transport=idp.transport(),
        idp_jwks_refetch_min_seconds=30,
        idp_jwks_cache_seconds=300,
    )
    idp.clock = core.clock.now
    await admin.create_tenant(core, "shop")
    await admin.create_client(core, "shop", ClientKind.STOREFRONT, (), client_id="front")
    await admin.create_customer(core, "shop", "ann@shop.example", "pw-123456", ("c.read",), ())
    result = Setup(core, idp)
    await result.configure()
    yield result
    await core.outbound.close()


async def test_a_provider_token_becomes_a_customer_token_continuing_the_session(
    setup: Setup,
) -> None:
    anonymous_token = await setup.anonymous_token()
    anon = await setup.core.store.find_token(setup.core.digests.token(anonymous_token))
    assert anon is not None
    issued = await token_exchange.issue(setup.core, "shop", setup.token(), anonymous_token)
    assert issued.session_id == anon.token.session_id
    assert issued.scope == "c.read tenant=shop" and issued.refresh_token
    assert issued.session_idle_time == setup.core.settings.session_idle_time
    info = await introspection.introspect(setup.core, issued.access_token, "shop")
    assert info.active and info.email == "ann@shop.example"
    saas = await introspection.introspect(setup.core, issued.saas_token, "shop")
    assert saas.active and saas.session_id == issued.session_id
    # The subject token type, when given, must name a JWT.
    await setup.exchange(setup.token(), subject_token_type=token_exchange.JWT_TOKEN_TYPE)
    with pytest.raises(InvalidRequest, match="subject_token_type"):
        await setup.exchange(setup.token(), subject_token_type="urn:x:saml2")


async def test_an_unknown_customer_is_created_only_where_the_provider_allows(
    setup: Setup,
) -> None:
    store = setup.core.store
    with pytest.raises(AccessDenied, match="no customer account"):
        await setup.exchange(setup.token("new@shop.example"))
    assert await store.find_customer("shop", "new@shop.example") is None

    await setup.configure(create_customers=True, customer_scopes=("c.read", "o.write"))
    first = await setup.exchange(setup.token("New@Shop.example"))
    created = await store.find_customer("shop", "new@shop.example")
    assert created is not None and created.scopes == ("c.read", "o.write")
    assert first.scope == "c.read o.write tenant=shop"
    again = await setup.exchange(setup.token("new@shop.example"))
    assert (await introspection.introspect(setup.core, again.access_token)).customer_id == (
        created.id
    )
    # A customer made so has no password anyone knows.
    assert created.password_hash.startswith("$argon2id$")


async def test_the_customer_claim_is_configurable(setup: Setup) -> None:
    await setup.configure(customer_claim="preferred_username")
    with pytest.raises(InvalidRequest, match="preferred_username claim is missing"):
        await setup.exchange(setup.token())
    issued = await setup.exchange(
        setup.token(email="x@y.example", preferred_username="ann@shop.example")
    )
    assert (await introspection.introspect(setup.core, issued.access_token)).email == (
        "ann@shop.example"
    )
    with pytest.raises(InvalidRequest, match="not an e-mail address"):
        await setup.exchange(setup.token(preferred_username="ann"))


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    return ".".join(
        (part(json.dumps(header).encode()), part(json.dumps(claims).encode()), part(signature))
    )


async def test_every_check_of_the_saas_verifier_applies_to_subject_tokens(setup: Setup) -> None:
    now = int(setup.clock.now())
    key = setup.idp.keys[0]
    claims = jwt.decode(setup.token(), options={"verify_signature": False})
    public_pem = key.private.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    # HS256 keyed with the published public key (PyJWT itself refuses to make one).
    signing_input = _unsigned({"alg": "HS256", "kid": key.kid}, claims).rsplit(".", 1)[0]
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    hs256 = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    stranger = new_key()
    forged = jwt.encode(claims, stranger.private, algorithm="RS256", headers={"kid": key.kid})
    refused = {
        "issuer is not the identity provider's": setup.token(iss="https://evil.example"),
        "issuer is not the identity provider's ": setup.token(iss=setup.idp.issuer + "/x"),
        "audience is not the one configured": setup.token(aud="someone-else"),
        "audience is not the one configured ": setup.token(aud=["someone-else"]),
        "has expired": setup.token(exp=now - 61),
        "issued in the future": setup.token(iat=now + 61),
        "not valid yet": setup.token(nbf=now + 61),
        "algorithm is not allowed": _unsigned({"alg": "none", "kid": key.kid}, claims),
        "algorithm is not allowed ": hs256,
        "critical header extension": setup.token(headers={"crit": ["exp"], "exp": 1}),
        "header member": setup.token(headers={"jku": "https://evil.example/jwks"}),
        "typ is not": setup.token(headers={"typ": "dpop+jwt"}),
        "signature does not verify": forged,
        "email claim is missing": setup.token(email=None),
        "email claim is not verified": setup.token(email_verified=False),
        "kid names no published key": jwt.encode(claims, key.private, algorithm="RS256"),
        "not a JWS compact serialisation": "opaque-token-without-dots",
    }
    customers_before = await setup.core.store.password_hash_sample("shop", 100)
    for reason, token in refused.items():
        with pytest.raises(InvalidRequest, match=reason.strip()) as caught:
            await setup.exchange(token)
        assert caught.value.field == "subject_token"
        assert token not in str(caught.value)
    assert await setup.core.store.password_hash_sample("shop", 100) == customers_before
    # Within the leeway, and an audience list holding the audience exactly, are accepted.
    await setup.exchange(setup.token(exp=now - 30, iat=now - 300))
    await setup.exchange(setup.token(aud=["other", setup.idp.audience]))
    await setup.exchange(setup.token(headers={"typ": "at+jwt"}))


async def test_an_oversized_subject_token_is_refused_unread(setup: Setup) -> None:
    with pytest.raises(InvalidRequest, match="subject_token must be at most 8192"):
        await setup.exchange("a." + "b" * 9000 + ".c")
    assert setup.idp.requests["GET /jwks"] == 0


async def test_the_anonymous_token_is_checked_before_any_provider_request(setup: Setup) -> None:
    with pytest.raises(InvalidToken):
        await token_exchange.issue(setup.core, "shop", setup.token(), "not-a-token")
    assert setup.idp.requests.total() == 0
    with pytest.raises(InvalidRequest, match="config names no identity provider"):
        await setup.exchange(setup.token(), config="site_PL")
    await identity_provider_admin.delete_identity_provider(setup.core, "shop", "default")
    with pytest.raises(InvalidRequest, match="trusts no identity provider"):
        await setup.exchange(setup.token())
    assert setup.idp.requests.total() == 0


async def test_keys_rotate_with_a_rate_limited_refetch_on_an_unknown_kid(setup: Setup) -> None:
    await setup.exchange(setup.token())
    await setup.exchange(setup.token())
    assert setup.idp.requests["GET /jwks"] == 1  # cached

    setup.clock.advance(31)
    setup.idp.rotate()
    await setup.exchange(setup.token())  # new kid: fetched again at once
    assert setup.idp.requests["GET /jwks"] == 2

    stranger = new_key()
    invented = setup.idp.token("ann@shop.example", key=stranger, now=int(setup.clock.now()))
    for _ in range(5):  # within the interval: refused without a fetch
        with pytest.raises(InvalidRequest, match="kid names no published key"):
            await setup.exchange(invented)
    assert setup.idp.requests["GET /jwks"] == 2

    # A rotation seen within the interval waits for it to pass.
    setup.idp.rotate()
    with pytest.raises(InvalidRequest, match="kid names no published key"):
        await setup.exchange(setup.token())
    setup.clock.advance(30)
    await setup.exchange(setup.token())
    assert setup.idp.requests["GET /jwks"] == 3

    # The cache ages out: a known kid is fetched again after idp_jwks_cache_seconds.
    setup.clock.advance(300)
    await setup.exchange(setup.token())
    assert setup.idp.requests["GET /jwks"] == 4


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("huge", "more than 262144 bytes"),
        ("redirect", "redirect, which is not followed"),
        ("error", "status 500"),
        ("garbage", "not JSON"),
    ],
)
async def test_a_misbehaving_jwks_uri_is_a_503(setup: Setup, mode: str, reason: str) -> None:
    setup.idp.jwks_mode = mode
    with pytest.raises(IdentityProviderUnavailable, match=reason):
        await setup.exchange(setup.token())


async def test_a_provider_that_cannot_be_reached_is_a_503() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for handler, reason in ((refuse, "cannot be reached"), (slow, "did not answer in time")):
        idp = LocalIdp(serve=False)
        core = await memory_core(http_transport=httpx.MockTransport(handler))
        await admin.create_tenant(core, "shop")
        await admin.create_client(core, "shop", ClientKind.STOREFRONT, (), client_id="front")
        setup = Setup(core, idp)
        await setup.configure()
        with pytest.raises(IdentityProviderUnavailable, match=reason):
            await setup.exchange(setup.token())
        await core.outbound.close()


async def test_the_outbound_client_requests_only_the_providers_urls(setup: Setup) -> None:
    provider = await identity_providers_default(setup)
    for url in ("https://elsewhere.example/jwks", "http://169.254.169.254/", ""):
        with pytest.raises(IdentityProviderUnavailable, match="not one configured"):
            await setup.core.outbound.get_json(provider, url)
    assert setup.idp.requests.total() == 0


async def identity_providers_default(setup: Setup) -> IdentityProviderRecord:
    provider = await setup.core.store.get_identity_provider("shop", "default")
    assert provider is not None
    return provider


async def test_social_login_redeems_a_pkce_code_and_verifies_the_id_token(setup: Setup) -> None:
    verifier, _ = pkce_pair()
    code = setup.idp.authorization_code("ann@shop.example", REDIRECT, verifier, nonce="n-1")
    grant = social_login.AuthorizationCode(code, REDIRECT, verifier, "n-1")
    issued = await social_login.issue(setup.core, "shop", grant, await setup.anonymous_token())
    assert issued.external_id_token and issued.external_access_token
    assert (await introspection.introspect(setup.core, issued.access_token)).email == (
        "ann@shop.example"
    )
    # The code is single use at the provider: a second redemption is invalid_grant.
    with pytest.raises(InvalidGrant, match="refused the authorization code"):
        await social_login.issue(setup.core, "shop", grant, await setup.anonymous_token())


@pytest.mark.parametrize("fault", ["verifier", "redirect", "nonce"])
async def test_social_login_refusals(setup: Setup, fault: str) -> None:
    verifier, _ = pkce_pair()
    code = setup.idp.authorization_code("ann@shop.example", REDIRECT, verifier, nonce="n-1")
    grant = social_login.AuthorizationCode(code, REDIRECT, verifier, "n-1")
    if fault == "verifier":
        grant = dataclasses.replace(grant, code_verifier=pkce_pair()[0])
    elif fault == "redirect":
        grant = dataclasses.replace(grant, redirect_uri="https://shop.example/other")
    else:
        grant = dataclasses.replace(grant, nonce="n-2")
    with pytest.raises(InvalidGrant) as caught:
        await social_login.issue(setup.core, "shop", grant, await setup.anonymous_token())
    assert ("nonce claim" in str(caught.value)) == (fault == "nonce")


async def test_social_login_needs_a_provider_configured_for_it(setup: Setup) -> None:
    await setup.configure(token_endpoint="", client_id="", client_secret="")
    grant = social_login.AuthorizationCode("code", REDIRECT)
    with pytest.raises(InvalidRequest, match="not configured for social login"):
        await social_login.issue(setup.core, "shop", grant, await setup.anonymous_token())
    await setup.configure(client_secret="wrong")
    with pytest.raises(IdentityProviderUnavailable, match="status 401"):
        await social_login.issue(setup.core, "shop", grant, await setup.anonymous_token())


async def test_provider_configuration_is_checked(setup: Setup) -> None:
    refusals: dict[str, dict[str, Any]] = {
        "jwks_uri must be an https URL": {"jwks_uri": "http://idp.example/jwks"},
        "jwks_uri must be an absolute URL": {"jwks_uri": "https://user:pw@idp.example/jwks"},
        "token_endpoint must be an https URL": {"token_endpoint": "ftp://idp.example/token"},
        "algorithms must be asymmetric": {"algorithms": ("HS256",)},
        "issuer is required": {"issuer": ""},
        "client_secret needs a client_id": {"client_id": ""},
        "name contains characters": {"name": "a b"},
        "customer_scopes must not contain": {"customer_scopes": ("tokenservice.admin",)},
    }
    before = await setup.core.store.list_identity_providers("shop")
    for reason, change in refusals.items():
        with pytest.raises(InvalidRequest, match=reason):
            await setup.configure(**change)
    assert await setup.core.store.list_identity_providers("shop") == before
    # http is for a loopback provider, and only where the setting allows it.
    loopback = "http://127.0.0.1:9/jwks"
    with pytest.raises(InvalidRequest, match="https"):
        await setup.configure(jwks_uri=loopback)
    core = await memory_core(idp_allow_http_loopback=True)
    assert identity_provider_admin.check_url(core, loopback, "jwks_uri") == loopback
    with pytest.raises(InvalidRequest, match="https"):
        identity_provider_admin.check_url(core, "http://10.0.0.1/jwks", "jwks_uri")


async def test_a_failed_fetch_is_not_retried_within_the_interval(setup: Setup) -> None:
    setup.idp.jwks_mode = "error"
    for _ in range(5):
        with pytest.raises(IdentityProviderUnavailable):
            await setup.exchange(setup.token())
    assert setup.idp.requests["GET /jwks"] == 1
    setup.idp.jwks_mode = "ok"
    with pytest.raises(IdentityProviderUnavailable, match="retry later"):
        await setup.exchange(setup.token())
    setup.clock.advance(30)
    await setup.exchange(setup.token())
    assert setup.idp.requests["GET /jwks"] == 2
