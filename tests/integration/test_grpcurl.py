"""grpcurl, the real binary, against the real server: reflection lists and describes the services
and grpcurl calls them with JSON, with no proto file anywhere.

The server runs in this test's event loop, so grpcurl runs through asyncio subprocesses (a
blocking subprocess.run would stall the server it is talking to).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import grpc

from tests.support.harness import Harness, Shop
from tokenservice.v1 import token_service_pb2 as pb

GRPCURL = Path(sys.executable).parent / "grpcurl"
TOKEN_SERVICE = "tokenservice.v1.TokenService"
# grpcurl exits with 64 + the gRPC status code when a call fails.
GRPCURL_STATUS_EXIT_BASE = 64
PROTO_FLAGS = ("-proto", "-protoset", "-import-path")


async def grpcurl(
    harness: Harness, *args: str, data: dict[str, Any] | None = None, cwd: Path
) -> tuple[int, str, str]:
    """Runs `grpcurl -plaintext [-d JSON] <server> ARGS...`: (exit code, stdout, stderr).

    Requests are written in the proto3 JSON (camelCase) form; grpcurl prints responses with the
    proto field names (snake_case)."""
    assert not any(arg.startswith(PROTO_FLAGS) for arg in args), "no proto files allowed"
    command = [str(GRPCURL), "-plaintext"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    command += [harness.target, *args]
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,  # an empty directory: there is no .proto file for grpcurl to find
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def call_ok(
    harness: Harness, method: str, data: dict[str, Any] | None, cwd: Path
) -> dict[str, Any]:
    code, out, err = await grpcurl(harness, method, data=data, cwd=cwd)
    assert code == 0, f"grpcurl {method} failed ({code}): {err}"
    answer: dict[str, Any] = json.loads(out)
    return answer


def error_details(stderr: str) -> list[dict[str, Any]]:
    """The status details grpcurl prints after `Details:`, each as `N)` then a JSON object."""
    _, found, details = stderr.partition("Details:")
    assert found, f"grpcurl printed no status details: {stderr}"
    chunks = re.split(r"^\s*\d+\)", details, flags=re.MULTILINE)
    return [json.loads(chunk) for chunk in chunks if chunk.strip()]


async def test_list_shows_every_service_through_reflection(
    harness: Harness, tmp_path: Path
) -> None:
    code, out, err = await grpcurl(harness, "list", cwd=tmp_path)
    assert code == 0, err
    services = set(out.split())
    assert {
        "tokenservice.v1.TokenService",
        "tokenservice.v1.AdminService",
        "grpc.health.v1.Health",
    } <= services

    code, out, err = await grpcurl(harness, "list", TOKEN_SERVICE, cwd=tmp_path)
    assert code == 0, err
    assert set(out.split()) == {
        f"{TOKEN_SERVICE}.{name}"
        for name in (
            "IssueToken",
            "RefreshToken",
            "IntrospectToken",
            "RevokeToken",
            "GetJwks",
            "GetAllowedOrigins",
            "ListOwnSessions",
            "EndOwnSession",
            "EndOwnSessions",
            "WatchRevocations",
        )
    }


async def test_describe_token_service(harness: Harness, tmp_path: Path) -> None:
    code, out, err = await grpcurl(harness, "describe", TOKEN_SERVICE, cwd=tmp_path)
    assert code == 0, err
    assert f"{TOKEN_SERVICE} is a service" in out
    for rpc, request, response in (
        ("IssueToken", "IssueTokenRequest", "TokenResponse"),
        ("RefreshToken", "RefreshTokenRequest", "TokenResponse"),
        ("IntrospectToken", "IntrospectTokenRequest", "IntrospectTokenResponse"),
        ("RevokeToken", "RevokeTokenRequest", "RevokeTokenResponse"),
    ):
        assert (
            f"rpc {rpc} ( .tokenservice.v1.{request} ) returns ( .tokenservice.v1.{response} )"
            in out
        ), out

    # The request messages resolve too (the import graph comes through reflection).
    code, out, err = await grpcurl(
        harness, "describe", "tokenservice.v1.IssueTokenRequest", cwd=tmp_path
    )
    assert code == 0, err
    assert "oneof grant" in out
    for field in ("client_credentials", "anonymous", "customer_password"):
        assert field in out


async def test_client_credentials_then_introspect(harness: Harness, tmp_path: Path) -> None:
    shop = await harness.shop("acme")
    issued = await call_ok(
        harness,
        f"{TOKEN_SERVICE}/IssueToken",
        {"clientCredentials": {"clientId": shop.service_id, "clientSecret": shop.service_secret}},
        tmp_path,
    )
    assert issued["access_token"]
    assert issued["token_type"] == "Bearer"
    assert issued["kind"] == "TOKEN_KIND_SERVICE"
    assert issued["scope"] == "catalog.read catalog.write orders.read tenant=acme"
    assert int(issued["expires_in"]) in (14399, 14400)
    assert "refresh_token" not in issued  # service tokens are never refreshed

    introspected = await call_ok(
        harness, f"{TOKEN_SERVICE}/IntrospectToken", {"token": issued["access_token"]}, tmp_path
    )
    assert introspected["active"] is True
    assert introspected["kind"] == "TOKEN_KIND_SERVICE"
    assert introspected["tenant"] == "acme"
    assert introspected["client_id"] == shop.service_id

    # Cross-check with the grpcio stub: grpcurl got a real, live token.
    direct = await harness.introspect(issued["access_token"], "acme")
    assert direct.active
    assert direct.kind == pb.TOKEN_KIND_SERVICE


async def test_anonymous_issue(harness: Harness, tmp_path: Path) -> None:
    shop: Shop = await harness.shop("acme")
    issued = await call_ok(
        harness,
        f"{TOKEN_SERVICE}/IssueToken",
        {
            "anonymous": {
                "tenant": "acme",
                "clientId": shop.storefront_id,
                "context": {"currency": "EUR", "language": "de"},
            }
        },
        tmp_path,
    )
    assert issued["kind"] == "TOKEN_KIND_ANONYMOUS"
    assert issued["access_token"] and issued["refresh_token"] and issued["session_id"]
    assert issued["scope"] == "tenant=acme"
    assert int(issued["expires_in"]) in (3599, 3600)
    assert int(issued["refresh_token_expires_in"]) in (86399, 86400)

    introspected = await call_ok(
        harness,
        f"{TOKEN_SERVICE}/IntrospectToken",
        {"token": issued["access_token"], "tenant": "acme"},
        tmp_path,
    )
    assert introspected["active"] is True
    assert introspected["kind"] == "TOKEN_KIND_ANONYMOUS"
    assert introspected["session_id"] == issued["session_id"]


async def test_health_check_serving(harness: Harness, tmp_path: Path) -> None:
    answer = await call_ok(harness, "grpc.health.v1.Health/Check", None, tmp_path)
    assert answer == {"status": "SERVING"}
    named = await call_ok(
        harness, "grpc.health.v1.Health/Check", {"service": TOKEN_SERVICE}, tmp_path
    )
    assert named == {"status": "SERVING"}


async def test_unknown_client_shows_unauthenticated_and_the_reason(
    harness: Harness, tmp_path: Path
) -> None:
    await harness.shop("acme")
    code, out, err = await grpcurl(
        harness,
        f"{TOKEN_SERVICE}/IssueToken",
        data={"clientCredentials": {"clientId": "no-such-client", "clientSecret": "s3cret"}},
        cwd=tmp_path,
    )
    assert code == GRPCURL_STATUS_EXIT_BASE + grpc.StatusCode.UNAUTHENTICATED.value[0], (out, err)
    assert "Code: Unauthenticated" in err
    # The google.rpc.ErrorInfo detail resolves through reflection and names the OAuth error.
    details = error_details(err)
    assert [detail["@type"] for detail in details] == ["type.googleapis.com/google.rpc.ErrorInfo"]
    assert details[0]["reason"] == "invalid_client"
    assert details[0]["domain"] == "tokenservice"
    assert "s3cret" not in out + err
