"""AccountService over a real server (port 0) on a real database, called through grpcio stubs,
with mail in the embedded outbox folder: files read back as `tokenservice mail` reads them,
and through the CLI itself. The AdminService and the CLI set the tenant's account policy."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import grpc
import pytest

from server import admin
from server.mail import outbox
from server.records import ClientKind
from tests.support.harness import Harness, Shop, error_field, error_reason
from tests.support.mail import token_in
from tests.support.processes import cli, service_env
from tokenservice.v1 import account_service_pb2 as apb
from tokenservice.v1 import account_service_pb2_grpc as apb_grpc
from tokenservice.v1 import admin_service_pb2 as admin_pb
from tokenservice.v1 import token_service_pb2 as pb

PASSWORD = "a long and unusual passphrase"
NEW_PASSWORD = "another long passphrase"
LINK_BASE = "https://{tenant}.shop.example/account"


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, object]:
    return {"mail_outbox_dir": str(tmp_path / "outbox"), "account_link_base_url": LINK_BASE}


def accounts(harness: Harness) -> apb_grpc.AccountServiceStub:
    return apb_grpc.AccountServiceStub(harness.channel)


async def delivered(harness: Harness) -> list[outbox.StoredMessage]:
    """The outbox's messages once every delivery already scheduled has finished."""
    await harness.core.mail.settled()
    return outbox.list_messages(Path(harness.core.settings.mail_outbox_dir))


async def admin_metadata(harness: Harness, tenant: str) -> tuple[tuple[str, str], ...]:
    client, secret = await admin.create_client(
        harness.core, tenant, ClientKind.SERVICE, ("tokenservice.admin",)
    )
    assert secret is not None
    issued = await harness.stub.IssueToken(
        pb.IssueTokenRequest(
            client_credentials=pb.ClientCredentialsGrant(
                client_id=client.client_id, client_secret=secret
            )
        )
    )
    return (("authorization", f"Bearer {issued.access_token}"),)


async def login(harness: Harness, shop: Shop, email: str, password: str) -> pb.TokenResponse:
    anonymous = (await harness.anonymous(shop)).access_token
    return await harness.stub.IssueToken(
        pb.IssueTokenRequest(
            customer_password=pb.CustomerPasswordGrant(
                tenant=shop.tenant, email=email, password=password, anonymous_token=anonymous
            )
        )
    )


async def test_double_opt_in_sign_up_through_the_outbox(harness: Harness) -> None:
    shop = await harness.shop("acme")
    policy = await harness.admin_stub.SetAccountPolicy(
        admin_pb.AccountPolicy(tenant="acme", double_opt_in=True),
        metadata=await admin_metadata(harness, "acme"),
    )
    assert (policy.double_opt_in, policy.password_min_length) == (True, 8)
    assert policy.reject_common_passwords  # left out: kept
    stub = accounts(harness)
    anonymous = await harness.anonymous(shop)
    done = await stub.SignUp(
        apb.SignUpRequest(
            tenant="acme",
            email="new@acme.example",
            password=PASSWORD,
            anonymous_token=anonymous.access_token,
        )
    )
    assert done.customer_id and done.opt_in_required
    [message] = await delivered(harness)
    assert (message.to, message.kind) == ("new@acme.example", "signup-optin")
    token = token_in(message.body)
    assert f"https://acme.shop.example/account/signup-optin?token={token}" in message.body
    folder = Path(harness.core.settings.mail_outbox_dir)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(folder / f"{message.id}.eml").st_mode) == 0o600
    # The store keeps the link's digest only.
    if harness.database_kind == "sqlite":
        assert token.encode() not in harness.db_path.read_bytes()
    [(digest, purpose)] = await harness.query("SELECT digest, purpose FROM account_links")
    assert purpose == "opt_in" and token not in digest
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await login(harness, shop, "new@acme.example", PASSWORD)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(refused.value) == "account_not_confirmed"
    issued = await stub.ConfirmSignUp(
        apb.ConfirmSignUpRequest(tenant="acme", token=token, anonymous_token=anonymous.access_token)
    )
    assert issued.session_id == anonymous.session_id and issued.saas_token
    seen = await harness.introspect(issued.access_token, "acme")
    assert seen.active and seen.customer_id == done.customer_id
    assert (await login(harness, shop, "new@acme.example", PASSWORD)).access_token
    assert await harness.query("SELECT count(*) FROM account_links") == [(0,)]
    with pytest.raises(grpc.aio.AioRpcError) as taken:  # the session is the customer's now
        await stub.ConfirmSignUp(
            apb.ConfirmSignUpRequest(
                tenant="acme", token=token, anonymous_token=anonymous.access_token
            )
        )
    assert error_field(taken.value) == "anonymous_token"
    fresh = (await harness.anonymous(shop)).access_token
    with pytest.raises(grpc.aio.AioRpcError) as used:
        await stub.ConfirmSignUp(
            apb.ConfirmSignUpRequest(tenant="acme", token=token, anonymous_token=fresh)
        )
    assert used.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error_reason(used.value), error_field(used.value)) == ("invalid_grant", "token")


async def test_sign_up_refusals_store_nothing(harness: Harness) -> None:
    shop = await harness.shop("acme")
    stub = accounts(harness)
    anonymous = (await harness.anonymous(shop)).access_token
    before = await harness.row_counts()
    cases = [
        ("ALREADY_EXISTS", "already_exists", "email", shop.email, PASSWORD, anonymous),
        (
            "INVALID_ARGUMENT",
            "invalid_request",
            "password",
            "x@acme.example",
            "123456789",
            anonymous,
        ),
        ("INVALID_ARGUMENT", "invalid_request", "email", "not an email", PASSWORD, anonymous),
        ("UNAUTHENTICATED", "invalid_token", "", "x@acme.example", PASSWORD, "no-such-token"),
    ]
    for code, reason, field, email, password, token in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SignUp(
                apb.SignUpRequest(
                    tenant="acme", email=email, password=password, anonymous_token=token
                )
            )
        assert caught.value.code().name == code, email
        assert (error_reason(caught.value), error_field(caught.value)) == (reason, field)
        assert password not in (caught.value.details() or "")
    assert await harness.row_counts() == before
    assert await delivered(harness) == []


async def test_password_reset_through_the_outbox_ends_every_session(harness: Harness) -> None:
    shop = await harness.shop("acme")
    stub = accounts(harness)
    sessions = [await harness.customer(shop) for _ in range(2)]
    anonymous = (await harness.anonymous(shop)).access_token
    for email in (shop.email, "nobody@acme.example"):
        answer = await stub.RequestPasswordReset(
            apb.RequestPasswordResetRequest(tenant="acme", email=email, anonymous_token=anonymous)
        )
        assert answer == apb.AccountAccepted()
    [message] = await delivered(harness)  # the unknown e-mail got nothing
    assert (message.to, message.kind) == (shop.email, "password-reset")
    ended = await stub.ResetPassword(
        apb.ResetPasswordRequest(
            tenant="acme",
            token=token_in(message.body),
            new_password=NEW_PASSWORD,
            anonymous_token=anonymous,
        )
    )
    assert ended.sessions_ended == 2
    for issued in sessions:
        assert not (await harness.introspect(issued.access_token)).active
        assert not (await harness.introspect(issued.refresh_token)).active
    with pytest.raises(grpc.aio.AioRpcError):
        await harness.customer(shop)
    assert (await login(harness, shop, shop.email, NEW_PASSWORD)).access_token


async def test_password_change_keeps_this_session_and_ends_the_others(harness: Harness) -> None:
    shop = await harness.shop("acme")
    here, other = [await harness.customer(shop) for _ in range(2)]
    ended = await accounts(harness).ChangePassword(
        apb.ChangePasswordRequest(
            tenant="acme",
            access_token=here.access_token,
            current_password=shop.password,
            new_password=NEW_PASSWORD,
        )
    )
    assert ended.sessions_ended == 1
    assert (await harness.introspect(here.access_token)).active
    assert not (await harness.introspect(other.access_token)).active
    assert (await login(harness, shop, shop.email, NEW_PASSWORD)).access_token


async def test_email_change_moves_the_login_to_the_new_address(harness: Harness) -> None:
    shop = await harness.shop("acme")
    stub = accounts(harness)
    session = await harness.customer(shop)
    await stub.RequestEmailChange(
        apb.RequestEmailChangeRequest(
            tenant="acme",
            access_token=session.access_token,
            email=shop.email,
            password=shop.password,
            new_email="ann.new@acme.example",
        )
    )
    [message] = await delivered(harness)
    assert (message.to, message.kind) == ("ann.new@acme.example", "email-change")
    anonymous = (await harness.anonymous(shop)).access_token
    await stub.ConfirmEmailChange(
        apb.ConfirmEmailChangeRequest(
            tenant="acme", token=token_in(message.body), anonymous_token=anonymous
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as old:
        await login(harness, shop, shop.email, shop.password)
    assert old.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await login(harness, shop, "ann.new@acme.example", shop.password)).access_token
    seen = await harness.introspect(session.access_token)
    assert seen.active and seen.email == "ann.new@acme.example"


async def test_the_cli_sets_the_policy_and_shows_the_outbox(
    harness: Harness, tmp_path: Path
) -> None:
    if harness.database_kind != "sqlite":
        pytest.skip("the CLI runs against the SQLite file here")
    shop = await harness.shop("acme")
    env = service_env(
        harness.db_path, 0, TOKENSERVICE_MAIL_OUTBOX_DIR=harness.core.settings.mail_outbox_dir
    )
    shown = json.loads(
        await cli(
            env,
            "tenant",
            "account-policy",
            "acme",
            "--double-opt-in",
            "--password-min-length",
            "12",
            "--json",
        )
    )
    assert shown == {
        "tenant": "acme",
        "double_opt_in": True,
        "password_min_length": 12,
        "reject_common_passwords": True,
    }
    assert "double opt-in: on" in await cli(env, "tenant", "account-policy", "acme")
    with pytest.raises(grpc.aio.AioRpcError) as short:
        await accounts(harness).SignUp(
            apb.SignUpRequest(
                tenant="acme",
                email="x@acme.example",
                password="eleven char",
                anonymous_token=(await harness.anonymous(shop)).access_token,
            )
        )
    assert "at least 12" in (short.value.details() or "")
    await accounts(harness).RequestPasswordReset(
        apb.RequestPasswordResetRequest(
            tenant="acme",
            email=shop.email,
            anonymous_token=(await harness.anonymous(shop)).access_token,
        )
    )
    [message] = await delivered(harness)
    listed = json.loads(await cli(env, "mail", "list", "--json"))
    assert listed == {
        "messages": [
            {
                "id": message.id,
                "to": shop.email,
                "subject": message.subject,
                "kind": "password-reset",
            }
        ]
    }
    assert token_in(message.body) in await cli(env, "mail", "show", message.id)
