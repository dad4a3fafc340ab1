"""IssueToken with the customer_password grant: customer login continuing an anonymous session."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest
from argon2 import PasswordHasher, extract_parameters

from launcher.serve import serve_core
from server.records import TokenKind, TokenUse
from tests.support.harness import Harness, error_reason
from tokenservice.v1 import token_service_pb2 as pb


async def test_customer_login_continues_the_anonymous_session(harness: Harness) -> None:
    shop = await harness.shop("acme")
    anonymous = await harness.anonymous(shop, currency="EUR")
    customer = await harness.customer(shop, anonymous.access_token)
    assert customer.kind == pb.TOKEN_KIND_CUSTOMER
    assert customer.session_id == anonymous.session_id
    assert customer.expires_in == 14400 and customer.refresh_token_expires_in == 86400
    assert customer.scope == "customer.read order.write tenant=acme"
    assert customer.saas_token.count(".") == 2
    info = await harness.introspect(customer.access_token)
    assert info.active and info.kind == pb.TOKEN_KIND_CUSTOMER
    assert info.customer_id == shop.customer_id and info.email == shop.email
    assert info.session_id == anonymous.session_id
    assert info.legal_entity_id == ""  # two legal entities: none chosen until a refresh picks one
    session = await harness.core.store.get_session(anonymous.session_id)
    assert session is not None and session.customer_id == shop.customer_id
    assert session.context.currency == "EUR"


async def test_login_keeps_the_anonymous_refresh_token_anonymous(harness: Harness) -> None:
    """The storefront SDK goes on refreshing its pre-login anonymous token after login: the
    refresh token still works, on the same session, and yields anonymous tokens only."""
    shop = await harness.shop("acme")
    anonymous = await harness.anonymous(shop)
    await harness.customer(shop, anonymous.access_token)
    view = await harness.core.store.find_token(harness.core.digests.token(anonymous.refresh_token))
    assert view is not None and view.token.revoked_at is None
    again = await harness.stub.RefreshToken(
        pb.RefreshTokenRequest(
            tenant="acme", client_id=shop.storefront_id, refresh_token=anonymous.refresh_token
        )
    )
    assert again.session_id == anonymous.session_id
    assert again.kind == pb.TOKEN_KIND_ANONYMOUS and not again.saas_token
    info = await harness.introspect(again.access_token)
    assert (info.customer_id, info.email) == ("", "")


async def test_email_is_case_insensitive(harness: Harness) -> None:
    shop = await harness.shop("acme")
    anonymous = await harness.anonymous(shop)
    issued = await harness.stub.IssueToken(
        pb.IssueTokenRequest(
            customer_password=pb.CustomerPasswordGrant(
                tenant="acme",
                email=shop.email.upper(),
                password=shop.password,
                anonymous_token=anonymous.access_token,
            )
        )
    )
    assert issued.session_id == anonymous.session_id


@pytest.mark.parametrize("case", ["wrong password", "unknown email"])
async def test_wrong_credentials_are_unauthenticated_with_one_message(
    harness: Harness, case: str
) -> None:
    shop = await harness.shop("acme")
    anonymous = await harness.anonymous(shop)
    email = shop.email if case == "wrong password" else "nobody@acme.example"
    password = "not the password" if case == "wrong password" else shop.password
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.IssueToken(
            pb.IssueTokenRequest(
                customer_password=pb.CustomerPasswordGrant(
                    tenant="acme",
                    email=email,
                    password=password,
                    anonymous_token=anonymous.access_token,
                )
            )
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details() == "wrong email or password"
    assert password not in caught.value.details()


async def test_the_authorising_token_must_be_an_active_anonymous_token_of_the_tenant(
    harness: Harness,
) -> None:
    shop = await harness.shop("acme")
    other = await harness.shop("globex")
    service = await harness.service(shop)
    foreign = await harness.anonymous(other)
    anonymous = await harness.anonymous(shop)
    cases = [
        (service.access_token, grpc.StatusCode.UNAUTHENTICATED, "invalid_token"),
        (anonymous.refresh_token, grpc.StatusCode.UNAUTHENTICATED, "invalid_token"),
        ("not-a-token", grpc.StatusCode.UNAUTHENTICATED, "invalid_token"),
        (foreign.access_token, grpc.StatusCode.PERMISSION_DENIED, "access_denied"),
    ]
    for token, code, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.customer(shop, token)
        assert (caught.value.code(), error_reason(caught.value)) == (code, reason)
    harness.clock.advance(3601)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.customer(shop, anonymous.access_token)
    assert error_reason(caught.value) == "invalid_token"


async def test_a_session_cannot_be_taken_over_by_another_customer(harness: Harness) -> None:
    shop = await harness.shop("acme")
    from server import admin

    await admin.create_customer(harness.core, "acme", "bob@acme.example", "bobs password", (), ())
    anonymous = await harness.anonymous(shop)
    await harness.customer(shop, anonymous.access_token)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.IssueToken(
            pb.IssueTokenRequest(
                customer_password=pb.CustomerPasswordGrant(
                    tenant="acme",
                    email="bob@acme.example",
                    password="bobs password",
                    anonymous_token=anonymous.access_token,
                )
            )
        )
    assert error_reason(caught.value) == "invalid_grant"
    session = await harness.core.store.get_session(anonymous.session_id)
    assert session is not None and session.customer_id == shop.customer_id


async def test_customer_tokens_are_stored_with_the_customer(harness: Harness) -> None:
    shop = await harness.shop("acme")
    issued = await harness.customer(shop)
    view = await harness.core.store.find_token(harness.core.digests.token(issued.refresh_token))
    assert view is not None
    assert view.token.kind is TokenKind.CUSTOMER and view.token.use is TokenUse.REFRESH
    assert view.token.customer_id == shop.customer_id


async def test_a_hash_with_outdated_parameters_is_rehashed_by_the_next_login(
    harness: Harness,
) -> None:
    shop = await harness.shop("acme")
    [(current,)] = await harness.query(
        f"SELECT password_hash FROM customers WHERE id = '{shop.customer_id}'"  # noqa: S608
    )
    outdated = PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1).hash(shop.password)
    assert await harness.core.store.replace_password_hash(shop.customer_id, current, outdated)
    await harness.customer(shop)
    await harness.core.passwords.settled()
    [(stored,)] = await harness.query(
        f"SELECT password_hash FROM customers WHERE id = '{shop.customer_id}'"  # noqa: S608
    )
    assert stored != outdated
    assert extract_parameters(stored) == extract_parameters(current)  # the service's settings
    assert (await harness.customer(shop)).access_token  # and the password still logs in


async def test_a_shutdown_waits_for_the_rehash_a_login_started(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve_core's drain ends only once the rehash a login started has been stored (the
    rehash is held on a gate here, so the shutdown provably comes while it runs)."""
    shop = await harness.shop("acme")
    [(current,)] = await harness.query(
        f"SELECT password_hash FROM customers WHERE id = '{shop.customer_id}'"  # noqa: S608
    )
    outdated = PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1).hash(shop.password)
    assert await harness.core.store.replace_password_hash(shop.customer_id, current, outdated)
    passwords = harness.core.passwords
    gate = asyncio.Event()
    real_hash = passwords.hash

    async def gated_hash(password: str) -> str:
        await gate.wait()
        return await real_hash(password)

    monkeypatch.setattr(passwords, "hash", gated_hash)
    await harness.customer(shop)  # starts the rehash, which waits on the gate

    core = dataclasses.replace(
        harness.core,
        settings=dataclasses.replace(
            harness.core.settings,
            grpc_addr="127.0.0.1:0",
            http_addr="",
            shutdown_delay_seconds=0,
        ),
    )
    stop = asyncio.Event()
    serving = asyncio.create_task(serve_core(core, stop=stop, sweep=False))
    stop.set()
    done, _ = await asyncio.wait({serving}, timeout=2)
    assert not done, "the drain ended while a rehash was still running"
    gate.set()
    await asyncio.wait_for(serving, timeout=30)
    [(stored,)] = await harness.query(
        f"SELECT password_hash FROM customers WHERE id = '{shop.customer_id}'"  # noqa: S608
    )
    assert extract_parameters(stored) == extract_parameters(current)
