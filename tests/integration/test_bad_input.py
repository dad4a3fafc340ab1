"""Bad input: a clear status naming what is wrong, never INTERNAL or UNKNOWN, and no change to
what is stored."""

from __future__ import annotations

import grpc
import pytest

from tests.support.harness import Harness, error_reason
from tokenservice.v1 import token_service_pb2 as pb


async def row_counts(harness: Harness) -> dict[str, int]:
    return await harness.row_counts()


async def test_no_grant_is_unsupported_grant_type(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.IssueToken(pb.IssueTokenRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "unsupported_grant_type"
    assert "grant is required" in (caught.value.details() or "")


async def test_unknown_grant_field_is_unsupported_grant_type(harness: Harness) -> None:
    # A newer client's grant (field 9) arrives as an unknown field: no grant is set.
    raw = bytes([9 << 3 | 2, 0])
    call = harness.channel.unary_unary(
        "/tokenservice.v1.TokenService/IssueToken",
        request_serializer=lambda payload: payload,
        response_deserializer=pb.TokenResponse.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(raw)
    assert error_reason(caught.value) == "unsupported_grant_type"


async def test_garbage_bytes_are_rejected_without_internal_error(harness: Harness) -> None:
    call = harness.channel.unary_unary(
        "/tokenservice.v1.TokenService/IntrospectToken",
        request_serializer=lambda payload: payload,
        response_deserializer=pb.IntrospectTokenResponse.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(b"\xff\xff\xff\xff")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "invalid_request"


async def test_oversized_message_is_resource_exhausted(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.introspect("a" * (harness.core.settings.max_message_bytes + 1))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def bad_requests(shop_tenant: str, storefront: str, token: str) -> list[tuple[str, object]]:
    anonymous = pb.AnonymousGrant
    customer = pb.CustomerPasswordGrant
    return [
        ("tenant", pb.IssueTokenRequest(anonymous=anonymous(client_id=storefront))),
        ("tenant", pb.IssueTokenRequest(anonymous=anonymous(tenant="a", client_id=storefront))),
        (
            "tenant",
            pb.IssueTokenRequest(anonymous=anonymous(tenant="ab" * 9, client_id=storefront)),
        ),
        (
            "client_id",
            pb.IssueTokenRequest(anonymous=anonymous(tenant=shop_tenant, client_id="a b")),
        ),
        (
            "currency",
            pb.IssueTokenRequest(
                anonymous=anonymous(
                    tenant=shop_tenant,
                    client_id=storefront,
                    context=pb.SessionContext(currency="E" * 65),
                )
            ),
        ),
        (
            "language",
            pb.IssueTokenRequest(
                anonymous=anonymous(
                    tenant=shop_tenant,
                    client_id=storefront,
                    context=pb.SessionContext(language="E\nN"),
                )
            ),
        ),
        ("client_id", pb.IssueTokenRequest(client_credentials=pb.ClientCredentialsGrant())),
        (
            "scope",
            pb.IssueTokenRequest(
                client_credentials=pb.ClientCredentialsGrant(
                    client_id="x", client_secret="y", scope='bad"scope'
                )
            ),
        ),
        (
            "email",
            pb.IssueTokenRequest(
                customer_password=customer(
                    tenant=shop_tenant, email="not-an-email", password="p", anonymous_token=token
                )
            ),
        ),
        (
            "password",
            pb.IssueTokenRequest(
                customer_password=customer(
                    tenant=shop_tenant, email="a@b.example", anonymous_token=token
                )
            ),
        ),
        (
            "password",
            pb.IssueTokenRequest(
                customer_password=customer(
                    tenant=shop_tenant,
                    email="a@b.example",
                    password="p" * 1025,
                    anonymous_token=token,
                )
            ),
        ),
        (
            "anonymous_token",
            pb.IssueTokenRequest(
                customer_password=customer(tenant=shop_tenant, email="a@b.example", password="p")
            ),
        ),
        ("refresh_token", pb.RefreshTokenRequest(tenant=shop_tenant, client_id=storefront)),
        ("tenant", pb.RefreshTokenRequest(client_id=storefront, refresh_token=token)),
        (
            "legal_entity_id",
            pb.RefreshTokenRequest(tenant=shop_tenant, refresh_token=token, legal_entity_id="a/b"),
        ),
        ("token", pb.RevokeTokenRequest()),
        ("tenant", pb.RevokeTokenRequest(token=token, tenant="Bad Tenant")),
        ("tenant", pb.IntrospectTokenRequest(token=token, tenant="-x-")),
    ]


async def test_every_malformed_field_is_invalid_argument_and_changes_nothing(
    harness: Harness,
) -> None:
    shop = await harness.shop("acme")
    issued = await harness.anonymous(shop)
    before = await row_counts(harness)
    methods = {
        pb.IssueTokenRequest: harness.stub.IssueToken,
        pb.RefreshTokenRequest: harness.stub.RefreshToken,
        pb.RevokeTokenRequest: harness.stub.RevokeToken,
        pb.IntrospectTokenRequest: harness.stub.IntrospectToken,
    }
    for field, request in bad_requests("acme", shop.storefront_id, issued.refresh_token):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await methods[type(request)](request)
        error = caught.value
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error.details())
        assert error_reason(error) == "invalid_request"
        message = error.details() or ""
        assert field in message, (field, message)  # the RPC's own field names, never HTTP's
    assert await row_counts(harness) == before
    assert (await harness.introspect(issued.refresh_token)).active
