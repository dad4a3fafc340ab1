"""IntrospectToken and RevokeToken: inactive is an answer, not an error; logout ends a session."""

from __future__ import annotations

import grpc
import pytest

from tests.support.harness import Harness, error_info, error_reason
from tokenservice.v1 import token_service_pb2 as pb


async def test_unknown_expired_and_other_tenant_tokens_are_inactive(harness: Harness) -> None:
    shop = await harness.shop("acme")
    issued = await harness.anonymous(shop)
    assert not (await harness.introspect("x" * 43)).active
    assert not (await harness.introspect(issued.access_token, tenant="globex")).active
    assert (await harness.introspect(issued.access_token, tenant="acme")).active
    harness.clock.advance(3599)
    assert (await harness.introspect(issued.access_token)).expires_in == 1
    harness.clock.advance(1)
    inactive = await harness.introspect(issued.access_token)
    assert inactive == pb.IntrospectTokenResponse(active=False)


async def test_refresh_tokens_introspect_as_refresh(harness: Harness) -> None:
    shop = await harness.shop("acme")
    issued = await harness.anonymous(shop)
    info = await harness.introspect(issued.refresh_token)
    assert info.active and info.token_use == pb.TOKEN_USE_REFRESH
    assert info.exp - info.iat == 86400


@pytest.mark.parametrize("token", ["", "t" * 513])
async def test_malformed_token_is_invalid_argument(harness: Harness, token: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.introspect(token)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "invalid_request"


async def test_revoking_an_access_token_leaves_the_rest_of_the_session(harness: Harness) -> None:
    shop = await harness.shop("acme")
    issued = await harness.anonymous(shop)
    result = await harness.stub.RevokeToken(pb.RevokeTokenRequest(token=issued.access_token))
    assert result.revoked and result.revoked_count == 1
    assert not (await harness.introspect(issued.access_token)).active
    assert (await harness.introspect(issued.refresh_token)).active
    again = await harness.stub.RevokeToken(pb.RevokeTokenRequest(token=issued.access_token))
    assert not again.revoked


async def test_revoking_a_refresh_token_revokes_its_session(harness: Harness) -> None:
    shop = await harness.shop("acme")
    issued = await harness.anonymous(shop)
    result = await harness.stub.RevokeToken(pb.RevokeTokenRequest(token=issued.refresh_token))
    assert result.revoked_count == 2
    assert not (await harness.introspect(issued.access_token)).active


async def test_logout_revokes_every_token_of_the_session(harness: Harness) -> None:
    shop = await harness.shop("acme")
    anonymous = await harness.anonymous(shop)
    login = await harness.customer(shop, anonymous.access_token)
    unrelated = await harness.anonymous(shop)
    result = await harness.stub.RevokeToken(
        pb.RevokeTokenRequest(token=login.access_token, tenant="acme", end_session=True)
    )
    assert result.revoked
    for token in (anonymous.access_token, login.access_token, login.refresh_token):
        assert not (await harness.introspect(token)).active
    assert (await harness.introspect(unrelated.access_token)).active
    # A refresh after the logout is refused: its bearer (an access token of the session, which
    # a customer refresh needs) was revoked with the session, as over HTTP.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.RefreshToken(
            pb.RefreshTokenRequest(
                tenant="acme",
                refresh_token=login.refresh_token,
                access_token=login.access_token,
            )
        )
    assert error_reason(caught.value) == "invalid_token"


async def test_revoke_for_another_tenant_changes_nothing(harness: Harness) -> None:
    shop = await harness.shop("acme")
    issued = await harness.service(shop)
    result = await harness.stub.RevokeToken(
        pb.RevokeTokenRequest(token=issued.access_token, tenant="globex")
    )
    assert not result.revoked
    assert (await harness.introspect(issued.access_token)).active


async def bearer_refusal(harness: Harness, **request: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.IntrospectToken(pb.IntrospectTokenRequest(as_bearer=True, **request))
    return caught.value


async def test_as_bearer_answers_an_active_access_token_and_refuses_the_rest(
    harness: Harness,
) -> None:
    """validateauthtoken's question: an active access token of the tenant is introspected as
    usual; anything else is UNAUTHENTICATED, with cause "expired" only for an access token of
    the tenant that ran out of time. Without the flag the same tokens are only inactive."""
    shop = await harness.shop("acme")
    await harness.shop("globex")
    issued = await harness.anonymous(shop)
    active = await harness.stub.IntrospectToken(
        pb.IntrospectTokenRequest(token=issued.access_token, tenant="acme", as_bearer=True)
    )
    assert active.active and active.token_use == pb.TOKEN_USE_ACCESS
    for token, tenant in [
        ("x" * 43, "acme"),  # unknown
        (issued.refresh_token, "acme"),  # not an access token
        (issued.access_token, "globex"),  # another tenant's
    ]:
        refused = await bearer_refusal(harness, token=token, tenant=tenant)
        assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
        info = error_info(refused)
        assert (info.reason, info.metadata.get("cause", "")) == ("invalid_token", "")
    harness.clock.advance(3600)
    expired = await bearer_refusal(harness, token=issued.access_token, tenant="acme")
    assert error_info(expired).metadata["cause"] == "expired"
    assert expired.details() == "the token is not an active access token of this tenant"
    other_tenant = await bearer_refusal(harness, token=issued.access_token, tenant="globex")
    assert "cause" not in error_info(other_tenant).metadata
    assert not (await harness.introspect(issued.access_token, tenant="acme")).active


async def test_as_bearer_needs_a_tenant_and_takes_no_caller(harness: Harness) -> None:
    shop = await harness.shop("acme")
    issued = await harness.anonymous(shop)
    for request in (
        {"token": issued.access_token},
        {
            "token": issued.access_token,
            "tenant": "acme",
            "caller": pb.ClientAuthentication(client_id=shop.storefront_id),
        },
    ):
        refused = await bearer_refusal(harness, **request)
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(refused) == "invalid_request"
