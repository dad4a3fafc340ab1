"""IssueToken with the anonymous grant: storefront visitors get a session."""

from __future__ import annotations

import uuid

import grpc
import pytest

from tests.support.harness import Harness, error_reason
from tokenservice.v1 import token_service_pb2 as pb


async def test_anonymous_login_starts_a_session_with_its_context(harness: Harness) -> None:
    shop = await harness.shop("acme")
    issued = await harness.anonymous(
        shop, currency="EUR", site_code="main", language="EN", target_location="DE"
    )
    assert issued.kind == pb.TOKEN_KIND_ANONYMOUS
    assert issued.expires_in == 3600
    assert issued.refresh_token_expires_in == 86400
    assert issued.scope == "tenant=acme"
    assert issued.refresh_token and issued.refresh_token != issued.access_token
    assert uuid.UUID(issued.session_id)
    session = await harness.core.store.get_session(issued.session_id)
    assert session is not None
    assert (session.tenant, session.client_id) == ("acme", shop.storefront_id)
    assert session.context.currency == "EUR" and session.context.site_code == "main"
    assert session.context.language == "EN" and session.context.target_location == "DE"
    info = await harness.introspect(issued.access_token)
    assert info.active and info.kind == pb.TOKEN_KIND_ANONYMOUS
    assert info.session_id == issued.session_id and info.token_use == pb.TOKEN_USE_ACCESS
    assert 3599 <= info.expires_in <= 3600


async def test_each_login_is_a_new_session(harness: Harness) -> None:
    shop = await harness.shop("acme")
    first, second = await harness.anonymous(shop), await harness.anonymous(shop)
    assert first.session_id != second.session_id


@pytest.mark.parametrize(
    ("tenant", "client", "code", "reason"),
    [
        ("nosuch", "storefront", grpc.StatusCode.INVALID_ARGUMENT, "invalid_request"),
        ("acme", "unknown", grpc.StatusCode.UNAUTHENTICATED, "invalid_client"),
        ("acme", "other-tenant", grpc.StatusCode.PERMISSION_DENIED, "access_denied"),
        ("acme", "service", grpc.StatusCode.PERMISSION_DENIED, "unauthorized_client"),
        ("ACME", "storefront", grpc.StatusCode.INVALID_ARGUMENT, "invalid_request"),
        ("acme", "", grpc.StatusCode.INVALID_ARGUMENT, "invalid_request"),
    ],
)
async def test_anonymous_login_errors(
    harness: Harness, tenant: str, client: str, code: grpc.StatusCode, reason: str
) -> None:
    shop = await harness.shop("acme")
    other = await harness.shop("globex")
    client_id = {
        "storefront": shop.storefront_id,
        "unknown": "no-such-client",
        "other-tenant": other.storefront_id,
        "service": shop.service_id,
        "": "",
    }[client]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.IssueToken(
            pb.IssueTokenRequest(anonymous=pb.AnonymousGrant(tenant=tenant, client_id=client_id))
        )
    assert caught.value.code() == code
    assert error_reason(caught.value) == reason
    assert caught.value.details()
