"""Races on the store (SQLite and PostgreSQL): concurrent refreshes of one token and a burst of
logins."""

from __future__ import annotations

import asyncio

import grpc

from tests.support.harness import Harness, error_reason
from tokenservice.v1 import token_service_pb2 as pb


async def live_sessions(harness: Harness) -> list[tuple[str, int | None]]:
    return await harness.query("SELECT session_id, revoked_at FROM sessions")


async def test_fifty_simultaneous_refreshes_of_one_token(harness: Harness) -> None:
    shop = await harness.shop("acme")
    first = await harness.anonymous(shop)
    request = pb.RefreshTokenRequest(
        tenant="acme", client_id=shop.storefront_id, refresh_token=first.refresh_token
    )
    results = await asyncio.gather(
        *(harness.stub.RefreshToken(request) for _ in range(50)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, [repr(e) for e in errors]
    tokens = [r for r in results if isinstance(r, pb.TokenResponse)]
    assert {t.session_id for t in tokens} == {first.session_id}
    # one exchange: every caller is answered with the one successor pair it saved
    assert len(tokens) == 50 and all(t == tokens[0] for t in tokens)
    assert tokens[0].refresh_token != first.refresh_token
    # exactly one session (the one family), still live, and the presented token rotated once
    assert await live_sessions(harness) == [(first.session_id, None)]
    view = await harness.core.store.find_token(harness.core.digests.token(first.refresh_token))
    assert view is not None and view.token.rotated_at is not None
    assert await harness.query("SELECT count(*) FROM tokens WHERE use = 'refresh'") == [(2,)]
    # the successor belongs to that family and works
    follow = await harness.stub.RefreshToken(
        pb.RefreshTokenRequest(
            tenant="acme", client_id=shop.storefront_id, refresh_token=tokens[-1].refresh_token
        )
    )
    assert follow.session_id == first.session_id


async def test_fifty_simultaneous_reuses_after_the_grace_window(harness: Harness) -> None:
    shop = await harness.shop("acme")
    first = await harness.anonymous(shop)
    request = pb.RefreshTokenRequest(
        tenant="acme", client_id=shop.storefront_id, refresh_token=first.refresh_token
    )
    await harness.stub.RefreshToken(request)
    harness.clock.advance(11)
    results = await asyncio.gather(
        *(harness.stub.RefreshToken(request) for _ in range(50)), return_exceptions=True
    )
    assert all(isinstance(r, grpc.aio.AioRpcError) for r in results)
    assert {error_reason(r) for r in results if isinstance(r, grpc.aio.AioRpcError)} == {
        "invalid_grant"
    }
    [(session_id, revoked_at)] = await live_sessions(harness)
    assert session_id == first.session_id and revoked_at is not None


async def test_two_hundred_simultaneous_anonymous_logins(harness: Harness) -> None:
    shop = await harness.shop("acme")
    results = await asyncio.gather(
        *(harness.anonymous(shop) for _ in range(200)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, [repr(e) for e in errors[:3]]
    assert len({r.session_id for r in results if isinstance(r, pb.TokenResponse)}) == 200
    assert len(await live_sessions(harness)) == 200
