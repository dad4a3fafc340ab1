"""Reading what an HTTP request carries: bounded bodies, form or JSON parameters, query
parameters, HTTP Basic client credentials and bearer tokens.

Every refusal says what is wrong (413, 415, or a 400 `invalid_request` naming the parameter) and
never echoes a value: values may be tokens, secrets or passwords.

Lenient where the reference API is: a body field the route does not define is dropped unread,
whatever its type (a storefront's `"rememberMe": true` beside email and password), and is never
refused for its value or for being repeated. Strict where it matters: a field the route defines
must be a string (a JSON null counts as absent) and appear at most once.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request

from http_bridge.errors import HttpProblem, Problem
from server.errors import InvalidClient, InvalidRequest, InvalidToken
from server.records import ClientCredentials

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
Params = dict[str, str]


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def body_params(
    request: Request, limit: int, *, accept: tuple[str, ...], fields: Iterable[str]
) -> Params:
    """The route's `fields` from a form-encoded or JSON-object body, as `accept` allows (else
    415); any other field is ignored."""
    kind = media_type(request)
    if kind not in accept:
        raise HttpProblem(
            Problem(415, "invalid_request", f"Content-Type must be {' or '.join(accept)}")
        )
    body = await read_body(request, limit)
    known = frozenset(fields)
    if kind == FORM:
        return form_params(body, known)
    return json_params(body, known)


def form_params(body: bytes, fields: frozenset[str]) -> Params:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the form body is not valid UTF-8 form encoding") from None
    return unique((name, value) for name, value in pairs if name in fields)


def json_params(body: bytes, fields: frozenset[str]) -> Params:
    """A JSON object's `fields`, each a string (a null counts as absent); other members are
    ignored whatever they hold."""
    try:
        document = json.loads(body, object_pairs_hook=_Members, parse_int=_Integer)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: deep nesting
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(document, _Members):
        raise InvalidRequest("the body must be a JSON object")
    params: Params = {}
    seen: set[str] = set()
    for name, value in document:
        if name not in fields:
            continue
        if name in seen:  # a name given twice is a parameter given twice
            raise InvalidRequest(f"{name} is given more than once", field=name)
        seen.add(name)
        if value is None:
            continue
        if not isinstance(value, str) or isinstance(value, _Integer):
            raise InvalidRequest(f"{name} must be a string", field=name)
        if not _is_unicode(value):
            raise InvalidRequest(f"{name} is not valid Unicode", field=name)
        params[name] = value
    return params


class _Integer(str):
    """A JSON integer, kept as its digits: no route defines a number, and int() refuses more
    than 4,300 digits (CVE-2020-10735), which would make an ignored field refuse the body. Not a
    plain str, so a defined field holding a number is still refused as not a string."""


class _Members(list[tuple[str, Any]]):
    """A JSON object as its (name, value) members in order, repeats kept: json.loads' own dict
    would silently keep the last of a repeated name, and only the top-level object's defined
    fields are checked at all."""


def _is_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate (JSON's `\\ud800` escape), which UTF-8, and so
    protobuf and the JSON error response, cannot encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def query_params(request: Request, fields: Iterable[str]) -> Params:
    """The route's `fields` from the query string, each at most once; other parameters (a
    shop's tracking `utm_source`, repeated or not) are ignored, as in a body."""
    known = frozenset(fields)
    return unique(
        (name, value) for name, value in request.query_params.multi_items() if name in known
    )


def unique(pairs: Iterable[tuple[str, str]]) -> Params:
    """RFC 6749 section 3.1: a parameter must not be included more than once."""
    params: Params = {}
    for name, value in pairs:
        if name in params:
            raise InvalidRequest(f"{name} is given more than once", field=name)
        params[name] = value
    return params


def required(params: Params, name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise InvalidRequest(f"{name} is required", field=name)
    return value


def basic_credentials(request: Request) -> ClientCredentials | None:
    """RFC 6749 section 2.3.1 client_secret_basic: both parts form-encoded, then base64."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("the HTTP Basic credentials are malformed") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise InvalidClient("the HTTP Basic credentials are malformed")
    return ClientCredentials(unquote(client_id), unquote(secret))


def client_credentials(request: Request, params: Params) -> ClientCredentials:
    """The calling client: HTTP Basic, or client_id (and client_secret) in the body; exactly one
    method (RFC 6749 section 2.3)."""
    basic = basic_credentials(request)
    in_body = "client_id" in params or "client_secret" in params
    if basic is not None and in_body:
        raise InvalidRequest("authenticate the client either with HTTP Basic or in the body")
    if basic is not None:
        return basic
    if not params.get("client_id"):
        raise InvalidClient(
            "client authentication is required: HTTP Basic, or client_id (and client_secret)"
        )
    return ClientCredentials(params["client_id"], params.get("client_secret", ""))


def bearer_token(request: Request) -> str:
    """RFC 6750 section 2.1: `Authorization: Bearer <token>`."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    token = value.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken("Authorization: Bearer <access token> is required")
    return token


def _too_large(limit: int) -> HttpProblem:
    return HttpProblem(Problem(413, "invalid_request", f"the body must be at most {limit} bytes"))
