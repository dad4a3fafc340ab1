"""A customer's sessions over a real server (grpcio stubs; SQLite file and PostgreSQL) and the
`tokenservice` CLI on the same SQLite file: the customer's own ListOwnSessions, EndOwnSession and
EndOwnSessions; AdminService's ListCustomerSessions, EndCustomerSession(s) and
EndLegalEntitySessions, authorised like the other admin calls. Every ending is seen by
introspection at once, although the server caches what it introspected (for an hour here, so
that only dropping the entries can make it so)."""

from __future__ import annotations

import json

import grpc
import pytest

from tests.integration.test_admin_service import admin_token, bearer
from tests.support.harness import Harness, Shop, error_field, error_reason
from tests.support.processes import cli, service_env
from tokenservice.v1 import admin_service_pb2 as apb
from tokenservice.v1 import token_service_pb2 as pb

PAGE_SIZE = 2


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"token_cache_seconds": 3600.0, "sessions_page_size": PAGE_SIZE}


async def cached_active(harness: Harness, *tokens: str) -> None:
    """Each token introspects as active (and is now in the server's cache)."""
    for token in tokens:
        assert (await harness.introspect(token)).active


async def inactive(harness: Harness, *tokens: str) -> bool:
    return not any([(await harness.introspect(token)).active for token in tokens])


async def own_ids(harness: Harness, shop: Shop, token: str) -> list[str]:
    ids, page_token = [], ""
    while True:
        page = await harness.stub.ListOwnSessions(
            pb.ListOwnSessionsRequest(tenant=shop.tenant, bearer_token=token, page_token=page_token)
        )
        ids += [s.session_id for s in page.sessions]
        page_token = page.next_page_token
        if not page_token:
            return ids


async def stored_state(harness: Harness) -> list[object]:
    """Every session and token, with when each was revoked: what a refusal must not change."""
    return [
        await harness.query("SELECT session_id, revoked_at FROM sessions ORDER BY session_id"),
        await harness.query("SELECT digest, revoked_at FROM tokens ORDER BY digest"),
    ]


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_a_customer_lists_its_sessions_a_page_at_a_time(harness: Harness) -> None:
    shop = await harness.shop("acme")
    sessions = [await harness.customer(shop) for _ in range(3)]
    me = sessions[0]
    first = await harness.stub.ListOwnSessions(
        pb.ListOwnSessionsRequest(tenant=shop.tenant, bearer_token=me.access_token)
    )
    assert len(first.sessions) == PAGE_SIZE and first.next_page_token
    assert sorted(await own_ids(harness, shop, me.access_token)) == sorted(
        s.session_id for s in sessions
    )
    listed = {
        s.session_id: s
        for page_token in ("", first.next_page_token)
        for s in (
            await harness.stub.ListOwnSessions(
                pb.ListOwnSessionsRequest(
                    tenant=shop.tenant, bearer_token=me.access_token, page_token=page_token
                )
            )
        ).sessions
    }
    assert [s.current for s in listed.values()].count(True) == 1
    mine = listed[me.session_id]
    assert mine.current and mine.client_id == shop.storefront_id
    assert mine.created_at <= mine.last_refreshed_at < mine.expires_at
    for token in (me.access_token, me.refresh_token):
        assert token not in str(first)


async def test_a_customer_ends_its_sessions_and_introspection_sees_it_at_once(
    harness: Harness,
) -> None:
    shop = await harness.shop("acme")
    here, there, elsewhere = [await harness.customer(shop) for _ in range(3)]
    await cached_active(harness, there.access_token, there.refresh_token, elsewhere.access_token)
    ended = await harness.stub.EndOwnSession(
        pb.EndOwnSessionRequest(
            tenant=shop.tenant, bearer_token=here.access_token, session_id=there.session_id
        )
    )
    assert ended.ended_count == 1
    assert await inactive(harness, there.access_token, there.refresh_token, there.saas_token)
    assert not await inactive(harness, here.access_token)
    everywhere_else = await harness.stub.EndOwnSessions(
        pb.EndOwnSessionsRequest(
            tenant=shop.tenant, bearer_token=here.access_token, keep_current=True
        )
    )
    assert everywhere_else.ended_count == 1
    assert await inactive(harness, elsewhere.access_token)
    assert await own_ids(harness, shop, here.access_token) == [here.session_id]
    await cached_active(harness, here.access_token)
    everywhere = await harness.stub.EndOwnSessions(
        pb.EndOwnSessionsRequest(tenant=shop.tenant, bearer_token=here.access_token)
    )
    assert everywhere.ended_count == 1
    assert await inactive(harness, here.access_token, here.refresh_token)


async def test_no_customer_reaches_anothers_session_and_refusals_change_nothing(
    harness: Harness,
) -> None:
    acme, globex = await harness.shop("acme"), await harness.shop("globex")
    ann, theirs = await harness.customer(acme), await harness.customer(globex)
    visitor = await harness.anonymous(acme)
    before = await stored_state(harness)
    answers = []
    for session_id in (theirs.session_id, "no-such-session"):
        error = await refused(
            harness.stub.EndOwnSession(
                pb.EndOwnSessionRequest(
                    tenant=acme.tenant, bearer_token=ann.access_token, session_id=session_id
                )
            )
        )
        answers.append((error.code(), error.details(), error_field(error)))
    assert answers[0] == answers[1] == (grpc.StatusCode.NOT_FOUND, answers[0][1], "session_id")
    error = await refused(
        harness.stub.ListOwnSessions(
            pb.ListOwnSessionsRequest(tenant=acme.tenant, bearer_token=visitor.access_token)
        )
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    for tenant, token in ((acme.tenant, "not-a-token"), (globex.tenant, ann.access_token)):
        error = await refused(
            harness.stub.EndOwnSessions(pb.EndOwnSessionsRequest(tenant=tenant, bearer_token=token))
        )
        assert (error.code(), error_reason(error)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "invalid_token",
        )
    error = await refused(
        harness.stub.ListOwnSessions(
            pb.ListOwnSessionsRequest(
                tenant=acme.tenant, bearer_token=ann.access_token, page_token="garbage!"
            )
        )
    )
    assert (error.code(), error_field(error)) == (grpc.StatusCode.INVALID_ARGUMENT, "page_token")
    assert "garbage" not in (error.details() or "")
    assert await stored_state(harness) == before
    assert not await inactive(harness, ann.access_token, theirs.access_token)


async def test_admins_list_and_end_a_customers_sessions_in_their_own_tenant_only(
    harness: Harness,
) -> None:
    acme, globex = await harness.shop("acme"), await harness.shop("globex")
    sessions = [await harness.customer(acme) for _ in range(3)]
    acme_admin = bearer(await admin_token(harness, "acme", ("tokenservice.admin",)))
    globex_admin = bearer(await admin_token(harness, "globex", ("tokenservice.admin",)))
    by_email = apb.ListCustomerSessionsRequest(tenant="acme", email=acme.email)
    error = await refused(harness.admin_stub.ListCustomerSessions(by_email, metadata=globex_admin))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    error = await refused(
        harness.admin_stub.EndCustomerSessions(
            apb.EndCustomerSessionsRequest(tenant="acme", email=acme.email), metadata=globex_admin
        )
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    error = await refused(
        harness.admin_stub.EndLegalEntitySessions(
            apb.EndLegalEntitySessionsRequest(tenant="acme", legal_entity_id="le-1"),
            metadata=globex_admin,
        )
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    error = await refused(harness.admin_stub.ListCustomerSessions(by_email))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert not await inactive(harness, *(s.access_token for s in sessions))

    page = await harness.admin_stub.ListCustomerSessions(by_email, metadata=acme_admin)
    assert len(page.sessions) == PAGE_SIZE and page.next_page_token
    assert not any(s.current for s in page.sessions)
    by_id = apb.ListCustomerSessionsRequest(tenant="acme", customer_id=acme.customer_id)
    assert await harness.admin_stub.ListCustomerSessions(by_id, metadata=acme_admin) == page
    error = await refused(
        harness.admin_stub.ListCustomerSessions(
            apb.ListCustomerSessionsRequest(tenant="acme", email=globex.email), metadata=acme_admin
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND

    await cached_active(harness, *(s.access_token for s in sessions))
    one = apb.EndCustomerSessionRequest(
        tenant="acme", email=acme.email, session_id=sessions[0].session_id
    )
    assert (await harness.admin_stub.EndCustomerSession(one, metadata=acme_admin)).ended_count == 1
    assert await inactive(harness, sessions[0].access_token)
    error = await refused(harness.admin_stub.EndCustomerSession(one, metadata=acme_admin))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    rest = apb.EndCustomerSessionsRequest(
        tenant="acme", customer_id=acme.customer_id, except_session_id=sessions[1].session_id
    )
    assert (
        await harness.admin_stub.EndCustomerSessions(rest, metadata=acme_admin)
    ).ended_count == 1
    assert await inactive(harness, sessions[2].access_token)
    assert not await inactive(harness, sessions[1].access_token)


async def test_a_platform_admin_ends_a_legal_entitys_sessions(harness: Harness) -> None:
    acme, globex = await harness.shop("acme"), await harness.shop("globex")
    chosen, other = await harness.customer(acme), await harness.customer(acme)
    elsewhere = await harness.customer(globex)
    switched = {}
    for session, tenant in ((chosen, acme), (elsewhere, globex)):
        switched[tenant.tenant] = await harness.stub.RefreshToken(
            pb.RefreshTokenRequest(
                tenant=tenant.tenant,
                refresh_token=session.refresh_token,
                legal_entity_id="le-2",
                access_token=session.access_token,
            )
        )
    await cached_active(harness, *(s.access_token for s in switched.values()))
    platform = bearer(await admin_token(harness, "globex", ("tokenservice.platform_admin",)))
    ended = await harness.admin_stub.EndLegalEntitySessions(
        apb.EndLegalEntitySessionsRequest(tenant="acme", legal_entity_id="le-2"),
        metadata=platform,
    )
    assert ended.ended_count == 1
    ended_now = switched["acme"]
    assert await inactive(
        harness, ended_now.access_token, ended_now.saas_token, chosen.access_token
    )
    assert not await inactive(harness, other.access_token)
    assert not await inactive(harness, switched["globex"].access_token)  # another tenant's
    error = await refused(
        harness.admin_stub.EndLegalEntitySessions(
            apb.EndLegalEntitySessionsRequest(tenant="nosuch", legal_entity_id="le-2"),
            metadata=platform,
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_the_cli_lists_and_ends_sessions_on_the_database(harness: Harness) -> None:
    """The CLI works on the database beside the running server (which then sees each ending
    at once in the database; its own cache is another replica's, bounded by its age)."""
    shop = await harness.shop("acme")
    sessions = [await harness.customer(shop) for _ in range(3)]
    env = service_env(harness.db_path, 0, TOKENSERVICE_SESSIONS_PAGE_SIZE=str(PAGE_SIZE))
    customer = ("--tenant", "acme", "--email", shop.email)
    listed = json.loads(await cli(env, "customer", "sessions", *customer, "--json"))
    assert sorted(s["session_id"] for s in listed["sessions"]) == sorted(
        s.session_id for s in sessions
    )
    assert "next_page_token" not in listed  # every page, without --page-size
    page = json.loads(
        await cli(env, "customer", "sessions", *customer, "--page-size", "1", "--json")
    )
    assert len(page["sessions"]) == 1 and page["next_page_token"]
    for token in (sessions[0].access_token, sessions[0].refresh_token):
        assert token not in json.dumps(listed)
    text = await cli(env, "customer", "end-session", *customer, sessions[0].session_id)
    assert text.strip() == f"ended session {sessions[0].session_id}"
    ended = json.loads(
        await cli(
            env,
            *("customer", "end-sessions", "--tenant", "acme", "--id", shop.customer_id),
            *("--except", sessions[1].session_id, "--json"),
        )
    )
    assert ended == {"ended_sessions": 1}
    rows = await harness.query(
        "SELECT session_id FROM sessions WHERE revoked_at IS NULL AND customer_id IS NOT NULL"
    )
    assert rows == [(sessions[1].session_id,)]
    left = json.loads(
        await cli(env, "legal-entity", "end-sessions", "--tenant", "acme", "le-1", "--json")
    )
    assert left == {"ended_sessions": 0}  # the customer has two entities and chose none
    assert (
        (await cli(env, "customer", "sessions", *customer))
        .splitlines()[0]
        .startswith(sessions[1].session_id)
    )
