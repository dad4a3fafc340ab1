"""Client-authenticated introspection and revocation, logout by bearer token, the deprecated
anonymous_token refresh, and the customer-refresh bearer binding: the domain rules the HTTP
bridge relies on, against the in-memory store."""

from __future__ import annotations

import pytest

from server import admin, client_auth, introspection, revocation
from server.clock import ManualClock
from server.core import Core
from server.errors import AccessDenied, InvalidClient, InvalidGrant, InvalidToken
from server.grants import anonymous, anonymous_token_refresh, customer_password, refresh
from server.records import ClientCredentials, ClientKind, SessionContext, TokenKind
from server.scopes import PLATFORM_ADMIN_SCOPE
from tests.support.cores import memory_core

PASSWORD = "pw-123456"


@pytest.fixture
async def core() -> Core:
    core = await memory_core()
    for tenant in ("shop", "rival"):
        await admin.create_tenant(core, tenant)
        await admin.create_client(
            core, tenant, ClientKind.STOREFRONT, (), client_id=f"{tenant}-front"
        )
        await admin.create_customer(core, tenant, f"ann@{tenant}.example", PASSWORD, (), ())
    return core


async def service_client(core: Core, tenant: str, *scopes: str) -> ClientCredentials:
    client, secret = await admin.create_client(core, tenant, ClientKind.SERVICE, scopes)
    assert secret is not None
    return ClientCredentials(client.client_id, secret)


def clock_of(core: Core) -> ManualClock:
    assert isinstance(core.clock, ManualClock)
    return core.clock


# --- client authentication ----------------------------------------------------------------------
async def test_service_client_needs_its_secret(core: Core) -> None:
    good = await service_client(core, "shop", "a")
    assert (await client_auth.authenticate(core, good)).client_id == good.client_id
    for wrong in (
        ClientCredentials(good.client_id, "x" * 43),
        ClientCredentials(good.client_id, ""),
        ClientCredentials("nobody", "x" * 43),
    ):
        with pytest.raises(InvalidClient, match="client authentication failed"):
            await client_auth.authenticate(core, wrong)


async def test_storefront_client_is_public_and_must_not_send_a_secret(core: Core) -> None:
    client = await client_auth.authenticate(core, ClientCredentials("shop-front"))
    assert client.tenant == "shop"
    with pytest.raises(InvalidClient):
        await client_auth.authenticate(core, ClientCredentials("shop-front", "anything"))


def test_credentials_repr_hides_the_secret() -> None:
    text = repr(ClientCredentials("svc", "very-secret-value"))
    assert "svc" in text and "very-secret-value" not in text


# --- introspection with a caller -------------------------------------------------------------
async def test_caller_sees_only_its_own_tenant(core: Core) -> None:
    mine = await anonymous.issue(core, "shop", "shop-front")
    theirs = await anonymous.issue(core, "rival", "rival-front")
    for caller in (ClientCredentials("shop-front"), await service_client(core, "shop", "a")):
        assert (await introspection.introspect(core, mine.access_token, caller=caller)).active
        other = await introspection.introspect(core, theirs.access_token, caller=caller)
        assert not other.active
        with pytest.raises(AccessDenied):
            await introspection.introspect(core, mine.access_token, "rival", caller=caller)


async def test_platform_admin_caller_sees_every_tenant(core: Core) -> None:
    theirs = await anonymous.issue(core, "rival", "rival-front")
    admin_caller = await service_client(core, "shop", PLATFORM_ADMIN_SCOPE)
    result = await introspection.introspect(core, theirs.access_token, caller=admin_caller)
    assert result.active and result.tenant == "rival"


async def test_unauthenticated_caller_is_refused_before_the_token_is_looked_at(
    core: Core,
) -> None:
    with pytest.raises(InvalidClient):
        await introspection.introspect(core, "unknown", caller=ClientCredentials("nobody"))


# --- revocation with a caller ---------------------------------------------------------------
async def test_storefront_caller_revokes_only_its_own_tokens(core: Core) -> None:
    await admin.create_client(core, "shop", ClientKind.STOREFRONT, (), client_id="shop-app")
    from_web = await anonymous.issue(core, "shop", "shop-front")
    from_app = await anonymous.issue(core, "shop", "shop-app")
    caller = ClientCredentials("shop-front")
    refused = await revocation.revoke(core, from_app.access_token, caller=caller)
    assert refused.revoked_count == 0
    assert (await introspection.introspect(core, from_app.access_token)).active
    done = await revocation.revoke(core, from_web.access_token, caller=caller)
    assert done.revoked_count == 1
    assert not (await introspection.introspect(core, from_web.access_token)).active


async def test_service_caller_revokes_its_tenant_only(core: Core) -> None:
    mine = await anonymous.issue(core, "shop", "shop-front")
    theirs = await anonymous.issue(core, "rival", "rival-front")
    caller = await service_client(core, "shop", "a")
    assert (await revocation.revoke(core, theirs.refresh_token, caller=caller)).revoked_count == 0
    assert (await introspection.introspect(core, theirs.access_token)).active
    # A refresh token revokes its whole session (RFC 7009 section 2.1).
    assert (await revocation.revoke(core, mine.refresh_token, caller=caller)).revoked_count == 2
    assert not (await introspection.introspect(core, mine.access_token)).active


# --- logout by bearer -----------------------------------------------------------------------
async def test_logout_needs_an_active_bearer_of_the_same_session(core: Core) -> None:
    first = await anonymous.issue(core, "shop", "shop-front")
    second = await anonymous.issue(core, "shop", "shop-front")
    with pytest.raises(AccessDenied):
        await revocation.revoke(core, first.access_token, "shop", bearer_token=second.access_token)
    assert (await introspection.introspect(core, first.access_token)).active
    with pytest.raises(InvalidToken):
        await revocation.revoke(core, first.access_token, "rival", bearer_token=first.access_token)
    with pytest.raises(InvalidToken):  # a refresh token is no bearer
        await revocation.revoke(core, first.access_token, "shop", bearer_token=first.refresh_token)
    done = await revocation.revoke(
        core, first.access_token, "shop", bearer_token=first.access_token
    )
    assert done.revoked_count == 2  # the whole session, without asking for end_session
    assert not (await introspection.introspect(core, first.refresh_token)).active
    with pytest.raises(InvalidToken):  # the bearer itself is now revoked
        await revocation.revoke(core, first.access_token, "shop", bearer_token=first.access_token)


# --- deprecated refresh by anonymous access token ----------------------------------------------
async def test_anonymous_token_refresh_keeps_the_session_without_a_refresh_token(
    core: Core,
) -> None:
    anon = await anonymous.issue(core, "shop", "shop-front")
    again = await anonymous_token_refresh.refresh(
        core, "shop", "shop-front", anon.access_token, SessionContext(language="fr")
    )
    assert again.session_id == anon.session_id
    assert again.refresh_token == "" and again.refresh_token_expires_in == 0
    assert again.access_token != anon.access_token
    assert (await introspection.introspect(core, again.access_token)).active
    stored = await core.store.get_session(anon.session_id)
    assert stored is not None and stored.context.language == "fr"


async def test_anonymous_token_refresh_refusals(core: Core) -> None:
    anon = await anonymous.issue(core, "shop", "shop-front")
    with pytest.raises(InvalidGrant):  # a refresh token is not an anonymous access token
        await anonymous_token_refresh.refresh(core, "shop", "shop-front", anon.refresh_token)
    with pytest.raises(AccessDenied):
        await anonymous_token_refresh.refresh(core, "rival", "rival-front", anon.access_token)
    await admin.create_client(core, "shop", ClientKind.STOREFRONT, (), client_id="shop-app")
    with pytest.raises(InvalidGrant, match="not issued to this client"):
        await anonymous_token_refresh.refresh(core, "shop", "shop-app", anon.access_token)


async def test_anonymous_token_refresh_after_login_stays_anonymous(core: Core) -> None:
    """As the anonymous refresh token does: the storefront's anonymous tokens keep working after
    customer login, on the same session, and never carry the customer's rights."""
    anon = await anonymous.issue(core, "shop", "shop-front")
    await customer_password.issue(core, "shop", "ann@shop.example", PASSWORD, anon.access_token)
    again = await anonymous_token_refresh.refresh(core, "shop", "shop-front", anon.access_token)
    assert again.session_id == anon.session_id
    assert again.kind is TokenKind.ANONYMOUS and again.saas_token == ""
    info = await introspection.introspect(core, again.access_token)
    assert info.active and info.kind is TokenKind.ANONYMOUS
    assert (info.customer_id, info.email, info.legal_entity_id) == ("", "", "")
    assert info.scope == "tenant=shop"
    # Logout ends the session, and with it this path.
    await revocation.revoke(core, again.access_token, "shop", end_session=True)
    with pytest.raises(InvalidGrant):
        await anonymous_token_refresh.refresh(core, "shop", "shop-front", anon.access_token)


async def test_anonymous_token_refresh_refuses_an_expired_token(core: Core) -> None:
    anon = await anonymous.issue(core, "shop", "shop-front")
    clock_of(core).advance(core.settings.anonymous_access_ttl)
    with pytest.raises(InvalidGrant):
        await anonymous_token_refresh.refresh(core, "shop", "shop-front", anon.access_token)


# --- customer refresh bearer binding ---------------------------------------------------------
async def test_customer_refresh_accepts_an_expired_but_not_a_revoked_bearer(core: Core) -> None:
    anon = await anonymous.issue(core, "shop", "shop-front")
    login = await customer_password.issue(
        core, "shop", "ann@shop.example", PASSWORD, anon.access_token
    )
    clock_of(core).advance(core.settings.customer_access_ttl + 1)
    assert not (await introspection.introspect(core, login.access_token)).active
    renewed = await refresh.refresh(
        core, "shop", login.refresh_token, access_token=login.access_token
    )
    assert renewed.session_id == login.session_id
    await core.store.revoke_token(core.digests.token(renewed.access_token), core.now())
    with pytest.raises(InvalidToken):
        await refresh.refresh(
            core, "shop", renewed.refresh_token, access_token=renewed.access_token
        )
    other = await customer_password.issue(
        core,
        "shop",
        "ann@shop.example",
        PASSWORD,
        (await anonymous.issue(core, "shop", "shop-front")).access_token,
    )
    with pytest.raises(InvalidToken, match="another session"):
        await refresh.refresh(core, "shop", renewed.refresh_token, access_token=other.access_token)


async def test_customer_refresh_accepts_a_live_anonymous_bearer_of_the_tenant(core: Core) -> None:
    """The storefront SDK's bearer: its current anonymous access token, of any session of the
    tenant (after a page reload, a new one); never an expired or revoked one, or another
    tenant's."""
    anon = await anonymous.issue(core, "shop", "shop-front")
    login = await customer_password.issue(
        core, "shop", "ann@shop.example", PASSWORD, anon.access_token
    )
    reloaded = await anonymous.issue(core, "shop", "shop-front")
    renewed = await refresh.refresh(
        core, "shop", login.refresh_token, access_token=reloaded.access_token
    )
    assert renewed.session_id == login.session_id and renewed.kind is TokenKind.CUSTOMER
    rival = await anonymous.issue(core, "rival", "rival-front")
    with pytest.raises(AccessDenied, match="another tenant"):
        await refresh.refresh(core, "shop", renewed.refresh_token, access_token=rival.access_token)
    revoked = await anonymous.issue(core, "shop", "shop-front")
    await core.store.revoke_token(core.digests.token(revoked.access_token), core.now())
    with pytest.raises(InvalidToken, match="unknown or revoked"):
        await refresh.refresh(
            core, "shop", renewed.refresh_token, access_token=revoked.access_token
        )
    clock_of(core).advance(core.settings.anonymous_access_ttl)
    with pytest.raises(InvalidToken, match="not an active anonymous"):
        await refresh.refresh(
            core, "shop", renewed.refresh_token, access_token=reloaded.access_token
        )
    # Refused before the exchange: the refresh token is still good.
    assert (
        await refresh.refresh(core, "shop", renewed.refresh_token, access_token=anon.access_token)
    ).session_id == login.session_id


async def test_a_customer_refresh_token_is_not_refreshed_as_an_anonymous_one(core: Core) -> None:
    anon = await anonymous.issue(core, "shop", "shop-front")
    login = await customer_password.issue(
        core, "shop", "ann@shop.example", PASSWORD, anon.access_token
    )
    with pytest.raises(InvalidGrant, match="not an anonymous refresh token"):
        await refresh.refresh(core, "shop", login.refresh_token, client_id="shop-front")
    # Refused before anything was exchanged: the token still refreshes where it belongs.
    renewed = await refresh.refresh(
        core, "shop", login.refresh_token, access_token=login.access_token
    )
    assert renewed.kind is login.kind and renewed.saas_token


async def test_logout_of_an_unknown_token_is_refused_not_reported_done(core: Core) -> None:
    anon = await anonymous.issue(core, "shop", "shop-front")
    with pytest.raises(AccessDenied):
        await revocation.revoke(core, "no-such-token", "shop", bearer_token=anon.access_token)
    assert (await introspection.introspect(core, anon.refresh_token)).active
