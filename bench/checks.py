"""The spot-check after every measurement: one more request with the same body, sent by a real
client rather than h2load, whose answer must be what the scenario promises (a token with an
access_token, an introspection that says active, or not, where the token was never seen). A
token answer is then introspected at the same server (gRPC IntrospectToken; over HTTP the
scenario's introspection route with the client's own credentials), which must say active: the
token is a real one the server will honour, not just a string in the right field. h2load's
status counts say that answers came back with 2xx; this says that they were real answers and
not, say, a 200 error page or an inactive introspection.

A check returns a short description of what it found; it raises CheckFailed otherwise.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import grpc

from bench.load import Scenario
from tokenservice.v1 import token_service_pb2 as pb


class CheckFailed(Exception):
    """The answer was not what the scenario expects; the message says what came back."""


def check(scenario: Scenario, base_url: str) -> str:
    if not scenario.expect:
        return ""
    if scenario.protocol == "grpc":
        return _check_grpc(scenario, base_url.removeprefix("http://"))
    return _check_http(scenario, base_url)


def _expect(scenario: Scenario, answer: dict[str, Any]) -> str:
    if scenario.expect == "token":
        token = answer.get("access_token")
        if not isinstance(token, str) or len(token) < 20:
            raise CheckFailed(f"no access_token in the answer (keys: {sorted(answer)})")
        return "access_token"
    if scenario.expect in ("active", "inactive"):
        wanted = scenario.expect == "active"
        if answer.get("active") is not wanted:
            raise CheckFailed(f"active is {answer.get('active')!r}, expected {wanted}")
        return scenario.expect
    if scenario.expect == "ok":
        return "2xx"
    raise ValueError(f"unknown expectation {scenario.expect!r}")


def _http(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The answer's body; CheckFailed unless the status is 2xx."""
    request = urllib.request.Request(  # noqa: S310 - loopback
        url, data=body or None, headers=headers, method="POST" if body else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            answer: bytes = response.read()
            return answer
    except urllib.error.HTTPError as error:
        raise CheckFailed(f"HTTP {error.code}") from error


def _http_json(url: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    try:
        answer = json.loads(_http(url, body, headers))
    except ValueError as error:
        raise CheckFailed("the answer is not JSON") from error
    if not isinstance(answer, dict):
        raise CheckFailed("the answer is not a JSON object")
    return answer


def _check_http(scenario: Scenario, base_url: str) -> str:
    headers = dict(header.split(": ", 1) for header in scenario.headers)
    if scenario.expect == "ok":
        _http(base_url + scenario.path, scenario.body, headers)
        return "2xx"
    answer = _http_json(base_url + scenario.path, scenario.body, headers)
    found = _expect(scenario, answer)
    if scenario.expect == "token" and scenario.introspect_path:
        form = dict(urllib.parse.parse_qsl(scenario.body.decode()))
        credentials: dict[str, str] = {
            k: form[k] for k in ("client_id", "client_secret") if k in form
        }
        fields: dict[str, str] = {"token": str(answer["access_token"]), **credentials}
        body = urllib.parse.urlencode(fields)
        introspection = _http_json(base_url + scenario.introspect_path, body.encode(), headers)
        if introspection.get("active") is not True:
            raise CheckFailed("the token it issued does not introspect as active")
        found += " that introspects active"
    return found


def _check_grpc(scenario: Scenario, target: str) -> str:
    message = scenario.body[5:]  # without the gRPC frame's 5-byte prefix
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(scenario.path)
        try:
            raw: bytes = call(message, timeout=30)
        except grpc.RpcError as error:
            raise CheckFailed(f"gRPC {error.code().name}") from error
        if scenario.expect == "token":
            token = pb.TokenResponse.FromString(raw)
            found = _expect(scenario, {"access_token": token.access_token})
            introspect = channel.unary_unary(
                "/tokenservice.v1.TokenService/IntrospectToken",
                request_serializer=pb.IntrospectTokenRequest.SerializeToString,
                response_deserializer=pb.IntrospectTokenResponse.FromString,
            )
            request = pb.IntrospectTokenRequest(token=token.access_token)
            if not introspect(request, timeout=30).active:
                raise CheckFailed("the token it issued does not introspect as active")
            return found + " that introspects active"
    if scenario.expect in ("active", "inactive"):
        introspection = pb.IntrospectTokenResponse.FromString(raw)
        return _expect(scenario, {"active": introspection.active})
    return _expect(scenario, {})
