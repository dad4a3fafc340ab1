"""The grants against the in-memory store, with a manual clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable

import pytest

from server import admin, introspection, revocation
from server.clock import ManualClock
from server.core import Core
from server.errors import InvalidClient, InvalidCredentials, InvalidGrant, InvalidScope
from server.grants import anonymous, client_credentials, customer_password, refresh
from server.records import ClientKind, IssuedTokens, SessionContext, TokenKind
from tests.support.cores import memory_core


@pytest.fixture
async def core() -> Core:
    core = await memory_core()
    await admin.create_tenant(core, "shop")
    await admin.create_client(core, "shop", ClientKind.STOREFRONT, (), client_id="front")
    await admin.create_customer(core, "shop", "ann@shop.example", "pw-123456", ("c.read",), ())
    return core


async def test_client_credentials(core: Core) -> None:
    client, secret = await admin.create_client(core, "shop", ClientKind.SERVICE, ("a", "b"))
    assert secret is not None
    issued = await client_credentials.issue(core, client.client_id, secret, "a")
    assert issued.scope == "a tenant=shop" and issued.refresh_token == ""
    with pytest.raises(InvalidScope):
        await client_credentials.issue(core, client.client_id, secret, "c")
    with pytest.raises(InvalidClient):
        await client_credentials.issue(core, client.client_id, "wrong", "")


async def test_anonymous_then_customer_then_logout(core: Core) -> None:
    anon = await anonymous.issue(core, "shop", "front", SessionContext(currency="EUR"))
    customer = await customer_password.issue(
        core, "shop", "ann@shop.example", "pw-123456", anon.access_token
    )
    assert customer.session_id == anon.session_id and customer.kind is TokenKind.CUSTOMER
    info = await introspection.introspect(core, customer.access_token, "shop")
    assert info.active and info.email == "ann@shop.example"
    with pytest.raises(InvalidCredentials):
        await customer_password.issue(core, "shop", "ann@shop.example", "nope", anon.access_token)
    result = await revocation.revoke(core, customer.access_token, end_session=True)
    assert result.revoked_count >= 3
    assert not (await introspection.introspect(core, anon.access_token)).active


async def test_refresh_rotation_grace_and_reuse(core: Core) -> None:
    clock = core.clock
    assert isinstance(clock, ManualClock)
    anon = await anonymous.issue(core, "shop", "front")
    rotated = await refresh.refresh(core, "shop", anon.refresh_token, client_id="front")
    assert rotated.session_id == anon.session_id
    clock.advance(10)
    await refresh.refresh(core, "shop", anon.refresh_token, client_id="front")
    clock.advance(1)
    with pytest.raises(InvalidGrant, match="already used"):
        await refresh.refresh(core, "shop", anon.refresh_token, client_id="front")
    assert not (await introspection.introspect(core, rotated.access_token)).active


async def test_a_refresh_retried_within_grace_answers_the_first_answer_again(core: Core) -> None:
    """A client whose refresh answer was lost presents the refresh token again: the same
    tokens, SaaS token included, not a second set; 3 s later the same ones with 3 s less."""
    clock = core.clock
    assert isinstance(clock, ManualClock)
    anon = await anonymous.issue(core, "shop", "front")
    login = await customer_password.issue(
        core, "shop", "ann@shop.example", "pw-123456", anon.access_token
    )
    clock.advance(60)

    def again() -> Awaitable[IssuedTokens]:
        return refresh.refresh(core, "shop", login.refresh_token, access_token=login.access_token)

    first = await again()
    assert first.saas_token and first.refresh_token not in (login.refresh_token, "")
    assert await again() == first
    clock.advance(3)
    later = await again()
    assert later == dataclasses.replace(
        first,
        expires_in=first.expires_in - 3,
        refresh_token_expires_in=first.refresh_token_expires_in - 3,
    )
    info = await introspection.introspect(core, later.saas_token, "shop")
    assert info.active and info.iat == clock.now() - 3
    # The anonymous lineage alike.
    anonymous_first = await refresh.refresh(core, "shop", anon.refresh_token, client_id="front")
    assert await refresh.refresh(core, "shop", anon.refresh_token, client_id="front") == (
        anonymous_first
    )


async def test_a_retry_after_its_successor_died_is_invalid_not_a_dead_token(core: Core) -> None:
    anon = await anonymous.issue(core, "shop", "front")
    first = await refresh.refresh(core, "shop", anon.refresh_token, client_id="front")
    await revocation.revoke(core, first.access_token)
    with pytest.raises(InvalidGrant, match="invalid, expired or revoked"):
        await refresh.refresh(core, "shop", anon.refresh_token, client_id="front")
    # The successor refresh token rotated in its turn: its retry is refused too.
    second = await refresh.refresh(core, "shop", first.refresh_token, client_id="front")
    await refresh.refresh(core, "shop", second.refresh_token, client_id="front")
    with pytest.raises(InvalidGrant, match="invalid, expired or revoked"):
        await refresh.refresh(core, "shop", first.refresh_token, client_id="front")


async def test_a_client_without_rotation_gets_a_new_access_token_every_time(core: Core) -> None:
    await admin.create_client(
        core, "shop", ClientKind.STOREFRONT, (), client_id="kept", refresh_rotation_disabled=True
    )
    anon = await anonymous.issue(core, "shop", "kept")
    answers = [await refresh.refresh(core, "shop", anon.refresh_token, client_id="kept")]
    answers.append(await refresh.refresh(core, "shop", anon.refresh_token, client_id="kept"))
    assert {a.refresh_token for a in answers} == {anon.refresh_token}
    assert len({a.access_token for a in answers}) == 2
    for answer in answers:
        assert (await introspection.introspect(core, answer.access_token)).active
