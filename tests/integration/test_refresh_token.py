"""RefreshToken: same session, rotation with a grace window (a retry within it gets the first
answer again), reuse detection, legal entities."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest

from server import metrics
from tests.support.harness import Harness, Shop, error_field, error_reason
from tokenservice.v1 import token_service_pb2 as pb


async def refresh_anonymous(
    harness: Harness, shop: Shop, refresh_token: str, **context: str
) -> pb.TokenResponse:
    return await harness.stub.RefreshToken(
        pb.RefreshTokenRequest(
            tenant=shop.tenant,
            client_id=shop.storefront_id,
            refresh_token=refresh_token,
            context=pb.SessionContext(**context),
        )
    )


async def expect_error(
    call: Awaitable[object], code: grpc.StatusCode, reason: str
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert (caught.value.code(), error_reason(caught.value)) == (code, reason)
    return caught.value


async def test_anonymous_refresh_keeps_the_session_and_updates_its_context(
    harness: Harness,
) -> None:
    shop = await harness.shop("acme")
    first = await harness.anonymous(shop, currency="EUR")
    harness.clock.advance(60)
    second = await refresh_anonymous(harness, shop, first.refresh_token, currency="USD")
    assert second.session_id == first.session_id
    assert second.access_token != first.access_token
    assert second.refresh_token != first.refresh_token
    assert second.expires_in == 3600 and second.refresh_token_expires_in == 86400
    session = await harness.core.store.get_session(first.session_id)
    assert session is not None and session.context.currency == "USD"
    assert session.updated_at == session.created_at + 60
    assert (await harness.introspect(second.access_token)).active


async def test_rotated_token_works_within_grace_and_revokes_the_session_after(
    harness: Harness,
) -> None:
    shop = await harness.shop("acme")
    first = await harness.anonymous(shop)
    second = await refresh_anonymous(harness, shop, first.refresh_token)
    harness.clock.advance(10)  # exactly the default grace window: still accepted
    in_grace = await refresh_anonymous(harness, shop, first.refresh_token)
    assert in_grace.session_id == first.session_id
    harness.clock.advance(1)  # past the window: reuse detected
    reused_before = metrics._abuse["refresh_token_reused"]
    await expect_error(
        refresh_anonymous(harness, shop, first.refresh_token),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_grant",
    )
    assert metrics._abuse["refresh_token_reused"] == reused_before + 1  # the operator's signal
    for token in (second.access_token, second.refresh_token, in_grace.access_token):
        assert not (await harness.introspect(token)).active
    await expect_error(
        refresh_anonymous(harness, shop, second.refresh_token),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_grant",
    )


@pytest.mark.parametrize("settings_overrides", [{"refresh_grace_seconds": 0}])
async def test_grace_window_is_configurable(harness: Harness) -> None:
    shop = await harness.shop("acme")
    first = await harness.anonymous(shop)
    await refresh_anonymous(harness, shop, first.refresh_token)
    harness.clock.advance(1)
    await expect_error(
        refresh_anonymous(harness, shop, first.refresh_token),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_grant",
    )


async def test_legacy_client_without_rotation_reuses_its_first_refresh_token(
    harness: Harness,
) -> None:
    shop = await harness.shop("acme", rotation=False)
    first = await harness.anonymous(shop)
    access_tokens = {first.access_token}
    for minutes in (1, 2, 3):
        harness.clock.advance(60)
        again = await refresh_anonymous(harness, shop, first.refresh_token)
        assert again.refresh_token == first.refresh_token
        assert again.access_token not in access_tokens  # no grace window, no retried answer
        access_tokens.add(again.access_token)
        assert again.refresh_token_expires_in == 86400 - 60 * minutes
        assert again.session_id == first.session_id
    assert (await harness.introspect(first.refresh_token)).active


async def test_refresh_token_expires(harness: Harness) -> None:
    shop = await harness.shop("acme")
    first = await harness.anonymous(shop)
    harness.clock.advance(3601)
    assert not (await harness.introspect(first.access_token)).active
    await refresh_anonymous(harness, shop, first.refresh_token)  # refresh still valid
    latest = await harness.anonymous(shop)
    harness.clock.advance(86401)
    await expect_error(
        refresh_anonymous(harness, shop, latest.refresh_token),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_grant",
    )


async def test_anonymous_refresh_checks_client_tenant_and_token_type(harness: Harness) -> None:
    shop = await harness.shop("acme")
    other = await harness.shop("globex")
    first = await harness.anonymous(shop)
    bad = pb.RefreshTokenRequest
    cases = [
        (
            bad(tenant="acme", refresh_token=first.refresh_token),
            "INVALID_ARGUMENT",
            "invalid_request",
        ),
        (
            bad(tenant="acme", client_id=other.storefront_id, refresh_token=first.refresh_token),
            "INVALID_ARGUMENT",
            "invalid_grant",
        ),
        (
            bad(tenant="globex", client_id=shop.storefront_id, refresh_token=first.refresh_token),
            "PERMISSION_DENIED",
            "access_denied",
        ),
        (
            bad(tenant="acme", client_id=shop.storefront_id, refresh_token=first.access_token),
            "INVALID_ARGUMENT",
            "invalid_grant",
        ),
        (
            bad(tenant="acme", client_id=shop.storefront_id, refresh_token="x" * 43),
            "INVALID_ARGUMENT",
            "invalid_grant",
        ),
        (
            bad(
                tenant="acme",
                client_id=shop.storefront_id,
                refresh_token=first.refresh_token,
                legal_entity_id="le-1",
            ),
            "INVALID_ARGUMENT",
            "invalid_request",
        ),
    ]
    for request, code, reason in cases:
        await expect_error(harness.stub.RefreshToken(request), grpc.StatusCode[code], reason)
    # none of the rejected calls used up the refresh token
    assert (await refresh_anonymous(harness, shop, first.refresh_token)).session_id


async def test_customer_refresh_with_legal_entity(harness: Harness) -> None:
    shop = await harness.shop("acme")
    login = await harness.customer(shop)
    refreshed = await harness.stub.RefreshToken(
        pb.RefreshTokenRequest(
            tenant="acme",
            refresh_token=login.refresh_token,
            legal_entity_id="le-2",
            access_token=login.access_token,
        )
    )
    assert refreshed.session_id == login.session_id
    assert refreshed.kind == pb.TOKEN_KIND_CUSTOMER and refreshed.expires_in == 14400
    assert refreshed.saas_token
    info = await harness.introspect(refreshed.access_token)
    assert info.legal_entity_id == "le-2" and info.email == shop.email
    session = await harness.core.store.get_session(login.session_id)
    assert session is not None and session.legal_entity_id == "le-2"
    # the legal entity carries over to the next refresh
    again = await harness.stub.RefreshToken(
        pb.RefreshTokenRequest(
            tenant="acme",
            refresh_token=refreshed.refresh_token,
            access_token=refreshed.access_token,
        )
    )
    assert (await harness.introspect(again.access_token)).legal_entity_id == "le-2"


async def test_customer_refresh_rejects_foreign_legal_entity_and_foreign_bearer(
    harness: Harness,
) -> None:
    shop = await harness.shop("acme")
    login = await harness.customer(shop)
    other_session = await harness.customer(shop)
    await expect_error(
        harness.stub.RefreshToken(
            pb.RefreshTokenRequest(
                tenant="acme",
                refresh_token=login.refresh_token,
                legal_entity_id="le-999",
                access_token=login.access_token,
            )
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "access_denied",
    )
    await expect_error(
        harness.stub.RefreshToken(
            pb.RefreshTokenRequest(
                tenant="acme",
                refresh_token=login.refresh_token,
                access_token=other_session.access_token,
            )
        ),
        grpc.StatusCode.UNAUTHENTICATED,
        "invalid_token",
    )
    # the anonymous token of the same session is an acceptable bearer
    anonymous_login = await harness.anonymous(shop)
    customer = await harness.customer(shop, anonymous_login.access_token)
    ok = await harness.stub.RefreshToken(
        pb.RefreshTokenRequest(
            tenant="acme",
            refresh_token=customer.refresh_token,
            access_token=anonymous_login.access_token,
        )
    )
    assert ok.session_id == anonymous_login.session_id


async def rotated_at(harness: Harness, refresh_token: str) -> list[tuple[object, ...]]:
    digest = harness.core.digests.token(refresh_token)
    return await harness.query(
        f"SELECT rotated_at, revoked_at FROM tokens WHERE digest = '{digest}'"  # noqa: S608
    )


async def test_customer_refresh_needs_an_access_token_of_its_session(harness: Harness) -> None:
    shop = await harness.shop("acme")
    login = await harness.customer(shop)
    other_customer = await harness.customer(shop)  # the same customer, another session
    other_visitor = await harness.anonymous(await harness.shop("initech"))

    def request(access_token: str) -> pb.RefreshTokenRequest:
        return pb.RefreshTokenRequest(
            tenant="acme", refresh_token=login.refresh_token, access_token=access_token
        )

    missing = await expect_error(
        harness.stub.RefreshToken(request("")), grpc.StatusCode.UNAUTHENTICATED, "invalid_token"
    )
    assert error_field(missing) == "access_token"
    assert "access_token is required" in (missing.details() or "")
    refused = await expect_error(
        harness.stub.RefreshToken(request(other_customer.access_token)),
        grpc.StatusCode.UNAUTHENTICATED,
        "invalid_token",
    )
    assert error_field(refused) == "access_token"
    # An anonymous token of another tenant: the tenant's storefronts only.
    foreign = await expect_error(
        harness.stub.RefreshToken(request(other_visitor.access_token)),
        grpc.StatusCode.PERMISSION_DENIED,
        "access_denied",
    )
    assert error_field(foreign) == "access_token"
    # Nothing was exchanged: the refresh token is neither rotated nor revoked.
    assert await rotated_at(harness, login.refresh_token) == [(None, None)]
    # The session's own access token is the bearer, expired as it may be by now.
    harness.clock.advance(14400 + 1)
    assert not (await harness.introspect(login.access_token)).active
    refreshed = await harness.stub.RefreshToken(request(login.access_token))
    assert refreshed.session_id == login.session_id
    assert (await harness.introspect(refreshed.access_token)).active


async def customer_refresh(
    harness: Harness, refresh_token: str, bearer: str, **fields: str
) -> pb.TokenResponse:
    return await harness.stub.RefreshToken(
        pb.RefreshTokenRequest(
            tenant="acme", refresh_token=refresh_token, access_token=bearer, **fields
        )
    )


async def test_anonymous_refresh_after_login_stays_anonymous_on_the_session(
    harness: Harness,
) -> None:
    """The storefront SDK refreshes its pre-login anonymous token with the pre-login refresh
    token: same session, anonymous kind, never the customer's rights."""
    shop = await harness.shop("acme")
    anonymous = await harness.anonymous(shop)
    login = await harness.customer(shop, anonymous.access_token)
    # The session now has a legal entity: still nothing of it on the anonymous tokens.
    await customer_refresh(harness, login.refresh_token, login.access_token, legal_entity_id="le-2")
    again = await refresh_anonymous(harness, shop, anonymous.refresh_token)
    assert again.session_id == anonymous.session_id
    assert again.kind == pb.TOKEN_KIND_ANONYMOUS
    assert again.saas_token == "" and again.scope == "tenant=acme"
    assert again.refresh_token and again.refresh_token != anonymous.refresh_token
    for token in (again.access_token, again.refresh_token):
        info = await harness.introspect(token)
        assert info.active and info.kind == pb.TOKEN_KIND_ANONYMOUS, token
        assert (info.customer_id, info.email, info.legal_entity_id) == ("", "", "")
        assert info.scope == "tenant=acme"
    # The rotated lineage goes on.
    third = await refresh_anonymous(harness, shop, again.refresh_token)
    assert third.session_id == anonymous.session_id and third.kind == pb.TOKEN_KIND_ANONYMOUS
    # An anonymous refresh token is no customer refresh token.
    await expect_error(
        customer_refresh(harness, third.refresh_token, third.access_token),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_grant",
    )
    assert (await harness.introspect(third.refresh_token)).active


async def test_customer_refresh_accepts_a_live_anonymous_bearer_of_any_session(
    harness: Harness,
) -> None:
    """After a page reload the SDK has a new anonymous session; its access token is the bearer
    of the stored customer refresh token. Revoked or expired it is refused, as is a customer
    token of another session."""
    shop = await harness.shop("acme")
    login = await harness.customer(shop)
    reloaded = await harness.anonymous(shop)
    renewed = await customer_refresh(harness, login.refresh_token, reloaded.access_token)
    assert renewed.session_id == login.session_id and renewed.kind == pb.TOKEN_KIND_CUSTOMER
    assert renewed.saas_token
    info = await harness.introspect(renewed.access_token)
    assert info.customer_id == shop.customer_id and info.email == shop.email
    # The bearer's own session is untouched: still anonymous, still its own.
    assert (await harness.introspect(reloaded.access_token)).customer_id == ""
    revoked = await harness.anonymous(shop)
    await harness.stub.RevokeToken(pb.RevokeTokenRequest(token=revoked.access_token))
    other_customer = await harness.customer(shop)
    for bearer in (revoked.access_token, other_customer.access_token):
        refused = await expect_error(
            customer_refresh(harness, renewed.refresh_token, bearer),
            grpc.StatusCode.UNAUTHENTICATED,
            "invalid_token",
        )
        assert error_field(refused) == "access_token"
    harness.clock.advance(3600)  # the anonymous access token's lifetime
    assert not (await harness.introspect(reloaded.access_token)).active
    await expect_error(
        customer_refresh(harness, renewed.refresh_token, reloaded.access_token),
        grpc.StatusCode.UNAUTHENTICATED,
        "invalid_token",
    )
    # Refused before the exchange: the refresh token goes on with a live bearer.
    live = await harness.anonymous(shop)
    assert (
        await customer_refresh(harness, renewed.refresh_token, live.access_token)
    ).session_id == login.session_id


async def test_refresh_token_wins_over_the_deprecated_anonymous_token(harness: Harness) -> None:
    """Generated clients send both (both reference specs mark both required): the refresh token
    is used, the anonymous_token ignored but for its shape."""
    shop = await harness.shop("acme")
    first = await harness.anonymous(shop)
    other = await harness.anonymous(shop)

    def both(anonymous_token: str) -> pb.RefreshTokenRequest:
        return pb.RefreshTokenRequest(
            tenant="acme",
            client_id=shop.storefront_id,
            refresh_token=first.refresh_token,
            anonymous_token=anonymous_token,
        )

    oversized = await expect_error(
        harness.stub.RefreshToken(both("x" * 513)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_request",
    )
    assert error_field(oversized) == "anonymous_token"
    assert await rotated_at(harness, first.refresh_token) == [(None, None)]
    answer = await harness.stub.RefreshToken(both(other.access_token))
    assert answer.session_id == first.session_id
    assert answer.refresh_token and answer.refresh_token != first.refresh_token
    assert (await rotated_at(harness, first.refresh_token))[0][0] is not None
    assert (await harness.introspect(other.access_token)).active


@pytest.mark.parametrize("reused", ["anonymous", "customer"])
async def test_reuse_of_either_refresh_token_after_login_revokes_the_whole_session(
    harness: Harness, reused: str
) -> None:
    shop = await harness.shop("acme")
    anonymous = await harness.anonymous(shop)
    login = await harness.customer(shop, anonymous.access_token)
    anonymous_next = await refresh_anonymous(harness, shop, anonymous.refresh_token)
    customer_next = await customer_refresh(
        harness, login.refresh_token, anonymous_next.access_token
    )
    harness.clock.advance(harness.core.settings.refresh_grace_seconds + 1)
    if reused == "anonymous":
        replay = refresh_anonymous(harness, shop, anonymous.refresh_token)
    else:
        replay = customer_refresh(harness, login.refresh_token, anonymous_next.access_token)
    await expect_error(replay, grpc.StatusCode.INVALID_ARGUMENT, "invalid_grant")
    for token in (
        anonymous_next.access_token,
        anonymous_next.refresh_token,
        customer_next.access_token,
        customer_next.refresh_token,
        customer_next.saas_token,
    ):
        assert not (await harness.introspect(token)).active
    await expect_error(
        refresh_anonymous(harness, shop, anonymous_next.refresh_token),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_grant",
    )
    live = await harness.anonymous(shop)
    await expect_error(
        customer_refresh(harness, customer_next.refresh_token, live.access_token),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_grant",
    )


async def live_refresh_tokens(harness: Harness, session_id: str, kind: str) -> int:
    """How many refresh tokens of `kind` the session has that are neither rotated nor revoked:
    the live members of its family, as the database holds them."""
    rows = await harness.query(
        "SELECT count(*) FROM tokens WHERE use = 'refresh' AND rotated_at IS NULL"  # noqa: S608
        f" AND revoked_at IS NULL AND kind = '{kind}' AND session_id = '{session_id}'"
    )
    return int(rows[0][0])


async def test_a_retried_refresh_gets_the_first_answer_and_no_second_family_member(
    harness: Harness,
) -> None:
    """A refresh whose answer was lost, retried with the same refresh token within the grace
    window: field for field the first answer (the SaaS token too), 3 s later the same tokens
    with 3 s less to live; one live refresh token in the session; reuse after the window."""
    shop = await harness.shop("acme")
    login = await harness.customer(shop)
    harness.clock.advance(60)
    first = await customer_refresh(harness, login.refresh_token, login.access_token)
    assert first.saas_token and first.expires_in == 14400
    assert await customer_refresh(harness, login.refresh_token, login.access_token) == first
    harness.clock.advance(3)
    later = await customer_refresh(harness, login.refresh_token, login.access_token)
    expected = pb.TokenResponse()
    expected.CopyFrom(first)
    expected.expires_in, expected.refresh_token_expires_in = 14400 - 3, 86400 - 3
    assert later == expected
    assert await live_refresh_tokens(harness, first.session_id, "customer") == 1
    customer_tokens = await harness.query(
        "SELECT count(*) FROM tokens WHERE kind = 'customer'"  # noqa: S608
        f" AND session_id = '{first.session_id}'"
    )
    assert customer_tokens == [(4,)]  # the login's pair and one successor pair
    harness.clock.advance(harness.core.settings.refresh_grace_seconds - 3 + 1)
    await expect_error(
        customer_refresh(harness, login.refresh_token, login.access_token),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_grant",
    )
    for token in (first.access_token, first.refresh_token, first.saas_token):
        assert not (await harness.introspect(token)).active


async def test_a_retry_with_another_legal_entity_gets_the_first_answer(harness: Harness) -> None:
    """The exchange was decided by the first call: a retry changes neither the tokens nor the
    session's legal entity."""
    shop = await harness.shop("acme")
    login = await harness.customer(shop)
    first = await customer_refresh(
        harness, login.refresh_token, login.access_token, legal_entity_id="le-2"
    )
    retry = await customer_refresh(
        harness, login.refresh_token, login.access_token, legal_entity_id="le-1"
    )
    assert retry == first
    assert (await harness.introspect(retry.access_token)).legal_entity_id == "le-2"
    session = await harness.core.store.get_session(first.session_id)
    assert session is not None and session.legal_entity_id == "le-2"


async def test_a_retry_after_its_successor_was_revoked_is_invalid_grant(harness: Harness) -> None:
    shop = await harness.shop("acme")
    anonymous = await harness.anonymous(shop)
    first = await refresh_anonymous(harness, shop, anonymous.refresh_token)
    await harness.stub.RevokeToken(pb.RevokeTokenRequest(token=first.access_token))
    error = await expect_error(
        refresh_anonymous(harness, shop, anonymous.refresh_token),
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_grant",
    )
    assert first.access_token not in (error.details() or "")
    assert first.refresh_token not in (error.details() or "")
    # Nothing was revoked on the way: the successor refresh token still refreshes.
    assert (await refresh_anonymous(harness, shop, first.refresh_token)).session_id
