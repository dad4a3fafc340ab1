"""`TOKENSERVICE_STRICT_CUSTOMER_SESSIONS`: the operator's switch back to session-bound customer
refreshes. Customer login revokes the session's anonymous refresh tokens, the deprecated
anonymous_token refresh stops at login, and the bearer of a customer refresh must be an access
token of the session itself; the storefront SDK's reload flow is then refused."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest

from tests.support.harness import Harness, error_field, error_reason
from tokenservice.v1 import token_service_pb2 as pb


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"strict_customer_sessions": True}


async def expect_error(
    call: Awaitable[object], code: grpc.StatusCode, reason: str
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert (caught.value.code(), error_reason(caught.value)) == (code, reason)
    return caught.value


async def test_login_ends_the_anonymous_refresh_forms(harness: Harness) -> None:
    shop = await harness.shop("acme")
    anonymous = await harness.anonymous(shop)
    await harness.customer(shop, anonymous.access_token)
    assert not (await harness.introspect(anonymous.refresh_token)).active
    for request in (
        pb.RefreshTokenRequest(
            tenant="acme", client_id=shop.storefront_id, refresh_token=anonymous.refresh_token
        ),
        pb.RefreshTokenRequest(
            tenant="acme", client_id=shop.storefront_id, anonymous_token=anonymous.access_token
        ),
    ):
        await expect_error(
            harness.stub.RefreshToken(request), grpc.StatusCode.INVALID_ARGUMENT, "invalid_grant"
        )


async def test_customer_refresh_needs_a_bearer_of_its_own_session(harness: Harness) -> None:
    shop = await harness.shop("acme")
    anonymous = await harness.anonymous(shop)
    login = await harness.customer(shop, anonymous.access_token)
    reloaded = await harness.anonymous(shop)

    def request(bearer: str) -> pb.RefreshTokenRequest:
        return pb.RefreshTokenRequest(
            tenant="acme", refresh_token=login.refresh_token, access_token=bearer
        )

    refused = await expect_error(
        harness.stub.RefreshToken(request(reloaded.access_token)),
        grpc.StatusCode.UNAUTHENTICATED,
        "invalid_token",
    )
    assert error_field(refused) == "access_token"
    # The session's own tokens, anonymous or customer, expired or not, are still accepted.
    harness.clock.advance(14400 + 1)
    renewed = await harness.stub.RefreshToken(request(anonymous.access_token))
    assert renewed.session_id == login.session_id and renewed.kind == pb.TOKEN_KIND_CUSTOMER
