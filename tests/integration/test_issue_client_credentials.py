"""IssueToken with the client_credentials grant: service tokens for back ends."""

from __future__ import annotations

import re

import grpc
import pytest

from tests.support.harness import Harness, error_reason
from tokenservice.v1 import token_service_pb2 as pb

URL_SAFE = re.compile(r"^[A-Za-z0-9_-]{43,}$")


async def test_omitted_scope_grants_all_of_the_clients_scopes(harness: Harness) -> None:
    shop = await harness.shop("acme")
    issued = await harness.service(shop)
    assert issued.scope == "catalog.read catalog.write orders.read tenant=acme"
    assert issued.token_type == "Bearer"
    assert issued.expires_in == 14400
    assert issued.refresh_token == ""
    assert issued.refresh_token_expires_in == 0
    assert issued.session_idle_time == 120
    assert issued.kind == pb.TOKEN_KIND_SERVICE
    assert URL_SAFE.match(issued.access_token)
    info = await harness.introspect(issued.access_token)
    assert info.active and info.kind == pb.TOKEN_KIND_SERVICE
    assert info.client_id == shop.service_id and info.tenant == "acme"
    assert info.scope == issued.scope


async def test_requested_subset_and_own_tenant_scope(harness: Harness) -> None:
    shop = await harness.shop("acme")
    issued = await harness.service(shop, scope="tenant=acme catalog.read")
    assert issued.scope == "catalog.read tenant=acme"


@pytest.mark.parametrize("scope", ["catalog.read admin.everything", "tenant=other catalog.read"])
async def test_scope_beyond_the_client_is_invalid_scope(harness: Harness, scope: str) -> None:
    shop = await harness.shop("acme")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.service(shop, scope=scope)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "invalid_scope"


async def test_wrong_secret_unknown_client_and_public_client_are_invalid_client(
    harness: Harness,
) -> None:
    shop = await harness.shop("acme")
    attempts = [
        (
            shop.service_id,
            shop.service_secret[:-1] + ("A" if shop.service_secret[-1] != "A" else "B"),
        ),
        ("no-such-client", shop.service_secret),
        (shop.storefront_id, shop.service_secret),
    ]
    for client_id, secret in attempts:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.stub.IssueToken(
                pb.IssueTokenRequest(
                    client_credentials=pb.ClientCredentialsGrant(
                        client_id=client_id, client_secret=secret
                    )
                )
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_reason(caught.value) == "invalid_client"
        assert secret not in (caught.value.details() or "")


async def test_a_client_id_without_a_secret_is_invalid_client(harness: Harness) -> None:
    """RFC 6749 section 5.2 over gRPC: the client_credentials grant needs client authentication,
    so a public storefront client (which has no secret), a service client that leaves its
    secret out and an unknown id all get UNAUTHENTICATED `invalid_client`, one answer for all,
    never INVALID_ARGUMENT."""
    shop = await harness.shop("acme")
    answers = set()
    for client_id in (shop.storefront_id, shop.service_id, "no-such-client"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.stub.IssueToken(
                pb.IssueTokenRequest(
                    client_credentials=pb.ClientCredentialsGrant(client_id=client_id)
                )
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_reason(caught.value) == "invalid_client"
        answers.add(caught.value.details())
    assert len(answers) == 1


async def test_the_database_holds_digests_not_tokens_or_secrets(harness: Harness) -> None:
    shop = await harness.shop("acme")
    issued = await harness.service(shop)
    anonymous = await harness.anonymous(shop)
    if harness.database_kind == "sqlite":  # every byte of the files, free pages included
        stored = b"".join(
            path.read_bytes()
            for path in harness.db_path.parent.iterdir()
            if path.name.startswith(harness.db_path.name) and not path.name.endswith(".key")
        )
    else:  # every row of every table
        tables = ("tokens", "clients", "sessions", "customers", "signing_keys")
        rows = [await harness.query(f"SELECT * FROM {table}") for table in tables]  # noqa: S608
        stored = repr(rows).encode()
    for value in (issued.access_token, anonymous.access_token, anonymous.refresh_token):
        assert value.encode() not in stored
    assert shop.service_secret.encode() not in stored
    assert harness.core.digests.token(issued.access_token).encode() in stored
