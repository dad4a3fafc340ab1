"""Token exchange and social login against a real OpenID provider: node-oidc-provider
(tests/js/oidc_provider.mjs), started here on 127.0.0.1, issuing RFC 9068 JWT access tokens by
client_credentials (the subject tokens) and authorization codes with PKCE by a real
authorization code flow (its redirects followed headless); a real gRPC server on SQLite.
The provider's keys rotate during one test: the service fetches its JWKS again on the new kid.
Skipped with a notice where Node.js is absent; CI requires it (TOKENSERVICE_TEST_REQUIRE_NODE).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import jwt
import pytest

from server import identity_provider_admin
from server.records import IdentityProviderRecord
from tests.support.harness import Harness, Shop, error_reason
from tests.support.node_idp import AUDIENCE, REDIRECT_URI, SHOP_WEB, NodeIdp, node_idp
from tokenservice.v1 import token_service_pb2 as pb

BACKEND_EMAIL = "storefront-backend@idp.example"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"idp_allow_http_loopback": True}


@pytest.fixture
async def idp(tmp_path: Path) -> AsyncIterator[NodeIdp]:
    async with node_idp(tmp_path) as provider:
        yield provider


async def trusted(harness: Harness, idp: NodeIdp, *, create: bool = True) -> Shop:
    shop = await harness.shop("acme")
    await identity_provider_admin.put_identity_provider(
        harness.core,
        IdentityProviderRecord(
            tenant=shop.tenant,
            name="default",
            issuer="",
            jwks_uri="",
            audience=AUDIENCE,
            created_at=0,
            create_customers=create,
            customer_scopes=("customer.read",),
            client_id=SHOP_WEB[0],
            client_secret=SHOP_WEB[1],
        ),
        # The provider's own discovery document names its issuer, JWKS and token endpoint.
        discovery_url=f"{idp.issuer}/.well-known/openid-configuration",
    )
    return shop


async def exchange(harness: Harness, shop: Shop, subject_token: str) -> pb.TokenResponse:
    anonymous = await harness.anonymous(shop)
    grant = pb.TokenExchangeGrant(
        tenant=shop.tenant, subject_token=subject_token, anonymous_token=anonymous.access_token
    )
    return await harness.stub.IssueToken(pb.IssueTokenRequest(token_exchange=grant))


async def test_a_jwt_of_the_provider_is_exchanged_and_survives_a_key_rotation(
    harness: Harness, idp: NodeIdp
) -> None:
    shop = await trusted(harness, idp)
    first = await idp.backend_token()
    header = jwt.get_unverified_header(first)
    assert header["kid"] == idp.keys[0]["kid"] and header["typ"] == "at+jwt"
    issued = await exchange(harness, shop, first)
    info = await harness.introspect(issued.access_token, shop.tenant)
    assert info.active and info.email == BACKEND_EMAIL
    keys = harness.core.provider_keys
    assert keys.fetches == 1

    # The provider rotates: its new tokens name a kid the cached JWKS lacks.
    harness.clock.advance(harness.core.settings.idp_jwks_refetch_min_seconds + 1)
    new = await idp.rotate()
    second = await idp.backend_token()
    assert jwt.get_unverified_header(second)["kid"] == new["kid"]
    again = await exchange(harness, shop, second)
    assert keys.fetches == 2
    assert (await harness.introspect(again.access_token)).customer_id == info.customer_id
    # The old key is still published, and so still verifies.
    await exchange(harness, shop, first)
    assert keys.fetches == 2


async def test_a_token_of_the_provider_for_another_audience_is_refused(
    harness: Harness, idp: NodeIdp
) -> None:
    shop = await harness.shop("acme")
    await identity_provider_admin.put_identity_provider(
        harness.core,
        IdentityProviderRecord(
            tenant=shop.tenant,
            name="default",
            issuer=idp.issuer,
            jwks_uri=f"{idp.issuer}/jwks",
            audience="urn:somebody-else",
            created_at=0,
            create_customers=True,
        ),
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await exchange(harness, shop, await idp.backend_token())
    assert error_reason(refused.value) == "invalid_request"
    assert "audience" in (refused.value.details() or "")


async def test_social_login_with_a_real_authorization_code_flow(
    harness: Harness, idp: NodeIdp
) -> None:
    shop = await trusted(harness, idp)
    nonce = secrets.token_urlsafe(12)
    code, verifier = await idp.authorization_code("zoe@acme.example", nonce=nonce)
    anonymous = await harness.anonymous(shop)
    grant = pb.SocialLoginGrant(
        tenant=shop.tenant,
        code=code,
        redirect_uri=REDIRECT_URI,
        code_verifier=verifier,
        nonce=nonce,
        anonymous_token=anonymous.access_token,
    )
    issued = await harness.stub.IssueToken(pb.IssueTokenRequest(social_login=grant))
    claims = jwt.decode(issued.external_id_token, options={"verify_signature": False})
    assert claims["email"] == "zoe@acme.example" and claims["nonce"] == nonce
    assert issued.external_access_token
    info = await harness.introspect(issued.access_token, shop.tenant)
    assert info.email == "zoe@acme.example" and info.session_id == anonymous.session_id
    assert issued.scope == "customer.read tenant=acme"

    # A wrong verifier: the provider refuses the code, and so does the service.
    code, _ = await idp.authorization_code("zoe@acme.example", nonce=nonce)
    wrong = pb.SocialLoginGrant(
        tenant=shop.tenant,
        code=code,
        redirect_uri=REDIRECT_URI,
        code_verifier=secrets.token_urlsafe(32),
        anonymous_token=(await harness.anonymous(shop)).access_token,
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.stub.IssueToken(pb.IssueTokenRequest(social_login=wrong))
    assert error_reason(refused.value) == "invalid_grant"
