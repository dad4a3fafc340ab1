"""IntrospectToken and RevokeToken: inactive is an answer, not an error; logout ends a session."""

from __future__ import annotations

import grpc
import pytest

from tests.integration.conftest import Harness, error_reason
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
