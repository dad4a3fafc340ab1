"""Token exchange and social login over a real gRPC server and SQLite file, with the providers
configured through the AdminService: against the local provider of tests/support/local_idp.py
(real HTTP on 127.0.0.1), which can be made to misbehave. node-oidc-provider, the real one, is
in test_identity_provider_node.py."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from tests.integration.test_admin_service import admin_token, bearer
from tests.support.harness import Harness, Shop, error_field, error_info, error_reason
from tests.support.local_idp import LocalIdp, pkce_pair
from tokenservice.v1 import admin_service_pb2 as apb
from tokenservice.v1 import token_service_pb2 as pb

REDIRECT = "https://shop.example/callback"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"idp_allow_http_loopback": True}


@pytest.fixture
def idp() -> Iterator[LocalIdp]:
    with LocalIdp() as provider:
        yield provider


async def configure(harness: Harness, shop: Shop, idp: LocalIdp, **fields: object) -> None:
    token = await admin_token(harness, shop.tenant, ("tokenservice.admin",))
    given: dict[str, object] = {
        "tenant": shop.tenant,
        "issuer": idp.issuer,
        "jwks_uri": idp.jwks_uri,
        "audience": idp.audience,
        "client_id": idp.client_id,
        "client_secret": idp.client_secret,
        "token_endpoint": idp.token_endpoint,
        **fields,
    }
    provider = apb.IdentityProvider(**given)
    await harness.admin_stub.PutIdentityProvider(
        apb.PutIdentityProviderRequest(provider=provider), metadata=bearer(token)
    )


async def exchange(
    harness: Harness, shop: Shop, subject_token: str, **fields: str
) -> pb.TokenResponse:
    anonymous = await harness.anonymous(shop)
    grant = pb.TokenExchangeGrant(
        tenant=shop.tenant,
        subject_token=subject_token,
        subject_token_type="urn:ietf:params:oauth:token-type:jwt",
        anonymous_token=anonymous.access_token,
        **fields,
    )
    return await harness.stub.IssueToken(pb.IssueTokenRequest(token_exchange=grant))


async def test_the_admin_service_configures_providers_and_never_answers_the_secret(
    harness: Harness, idp: LocalIdp
) -> None:
    shop = await harness.shop("acme")
    other = await harness.shop("globex")
    await configure(harness, shop, idp, name="site_PL", create_customers=True)
    token = await admin_token(harness, shop.tenant, ("tokenservice.admin",))
    listed = await harness.admin_stub.ListIdentityProviders(
        apb.ListIdentityProvidersRequest(tenant=shop.tenant), metadata=bearer(token)
    )
    assert [p.name for p in listed.providers] == ["site_PL"]
    found = listed.providers[0]
    assert found.has_client_secret and found.client_secret == ""
    assert found.customer_claim == "email" and list(found.algorithms) == ["RS256", "ES256"]
    # A tenant admin configures its own tenant only.
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await harness.admin_stub.ListIdentityProviders(
            apb.ListIdentityProvidersRequest(tenant=other.tenant), metadata=bearer(token)
        )
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    # A bad field is named, and nothing is stored.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await configure(harness, shop, idp, name="site_PL", jwks_uri="http://10.1.2.3/jwks")
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_field(refused.value) == "jwks_uri"
    again = await harness.core.store.get_identity_provider(shop.tenant, "site_PL")
    assert again is not None and again.jwks_uri == idp.jwks_uri
    # Discovery fills in the URLs once, at configuration time.
    discovered = apb.IdentityProvider(
        tenant=shop.tenant,
        name="found",
        audience="storefront",
        discovery_url=f"{idp.issuer}/.well-known/openid-configuration",
    )
    answer = await harness.admin_stub.PutIdentityProvider(
        apb.PutIdentityProviderRequest(provider=discovered), metadata=bearer(token)
    )
    assert (answer.issuer, answer.jwks_uri, answer.token_endpoint) == (
        idp.issuer,
        idp.jwks_uri,
        idp.token_endpoint,
    )
    deleted = await harness.admin_stub.DeleteIdentityProvider(
        apb.DeleteIdentityProviderRequest(tenant=shop.tenant, name="found"), metadata=bearer(token)
    )
    assert deleted.deleted


async def test_exchange_over_grpc_continues_the_session_as_the_customer(
    harness: Harness, idp: LocalIdp
) -> None:
    shop = await harness.shop("acme")
    await configure(harness, shop, idp)
    anonymous = await harness.anonymous(shop)
    issued = await harness.stub.IssueToken(
        pb.IssueTokenRequest(
            token_exchange=pb.TokenExchangeGrant(
                tenant=shop.tenant,
                subject_token=idp.token(shop.email),
                anonymous_token=anonymous.access_token,
            )
        )
    )
    assert issued.kind == pb.TOKEN_KIND_CUSTOMER and issued.session_id == anonymous.session_id
    assert issued.saas_token and issued.refresh_token and issued.session_idle_time == 120
    info = await harness.introspect(issued.access_token, shop.tenant)
    assert info.active and info.customer_id == shop.customer_id
    # The customer token refreshes like any other.
    renewed = await harness.stub.RefreshToken(
        pb.RefreshTokenRequest(
            tenant=shop.tenant, refresh_token=issued.refresh_token, access_token=issued.access_token
        )
    )
    assert renewed.session_id == anonymous.session_id


async def test_refusals_over_grpc_carry_their_reason_and_change_nothing(
    harness: Harness, idp: LocalIdp
) -> None:
    shop = await harness.shop("acme")
    await configure(harness, shop, idp)
    before = await harness.row_counts()
    cases = [
        (idp.token(shop.email, iss="https://evil.example"), {}, "invalid_request", "subject_token"),
        (idp.token(shop.email, aud="other"), {}, "invalid_request", "subject_token"),
        (idp.token(shop.email, lifetime=-120), {}, "invalid_request", "subject_token"),
        (idp.token("nobody@acme.example"), {}, "access_denied", ""),
        (idp.token(shop.email), {"config": "site_PL"}, "invalid_request", "config"),
    ]
    for token, fields, reason, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await exchange(harness, shop, token, **fields)
        assert error_reason(refused.value) == reason, refused.value.details()
        assert error_field(refused.value) == field
        assert token not in (refused.value.details() or "")
    after = await harness.row_counts()
    # Only the anonymous logins of the attempts were stored.
    assert {k: v for k, v in after.items() if k not in ("sessions", "tokens")} == {
        k: v for k, v in before.items() if k not in ("sessions", "tokens")
    }
    customers = await harness.query("SELECT count(*) FROM sessions WHERE customer_id IS NOT NULL")
    assert customers == [(0,)]


@pytest.mark.parametrize("mode", ["down", "huge", "redirect"])
async def test_a_provider_that_cannot_serve_is_unavailable_not_an_internal_error(
    harness: Harness, idp: LocalIdp, mode: str
) -> None:
    shop = await harness.shop("acme")
    await configure(harness, shop, idp)
    token = idp.token(shop.email)
    if mode == "down":
        idp.stop()
    else:
        idp.jwks_mode = mode
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await exchange(harness, shop, token)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    info = error_info(refused.value)
    assert (info.reason, info.metadata.get("cause")) == (
        "temporarily_unavailable",
        "identity_provider",
    )


async def test_social_login_over_grpc(harness: Harness, idp: LocalIdp) -> None:
    shop = await harness.shop("acme")
    await configure(harness, shop, idp, create_customers=True, customer_scopes=["customer.read"])
    verifier, _ = pkce_pair()
    code = idp.authorization_code("new@acme.example", REDIRECT, verifier, nonce="n-42")
    anonymous = await harness.anonymous(shop)
    grant = pb.SocialLoginGrant(
        tenant=shop.tenant,
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
        nonce="n-42",
        anonymous_token=anonymous.access_token,
    )
    issued = await harness.stub.IssueToken(pb.IssueTokenRequest(social_login=grant))
    assert issued.external_id_token and issued.external_access_token
    assert issued.scope == "customer.read tenant=acme"
    info = await harness.introspect(issued.access_token, shop.tenant)
    assert info.email == "new@acme.example" and info.session_id == anonymous.session_id
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await harness.stub.IssueToken(pb.IssueTokenRequest(social_login=grant))
    assert error_reason(reused.value) == "invalid_grant"
