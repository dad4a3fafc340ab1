"""The grants against the in-memory store, with a manual clock."""

from __future__ import annotations

import pytest

from server import admin, introspection, revocation
from server.clock import ManualClock
from server.core import Core
from server.errors import InvalidClient, InvalidCredentials, InvalidGrant, InvalidScope
from server.grants import anonymous, client_credentials, customer_password, refresh
from server.records import ClientKind, SessionContext, TokenKind
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
