"""The customer's own sessions (docs/sessions.md): `GET /customer/{tenant}/me/sessions` lists
them, `DELETE /customer/{tenant}/me/sessions/{sessionId}` ends one, `DELETE
/customer/{tenant}/me/sessions` ends them all ("log out everywhere"; `keepCurrent=true` spares
the caller's own). The reference has no such routes: these follow its style, a customer access
token as bearer, camelCase names, 204 for a DELETE, errors as `{status, type, message,
details}`, and a session id that is not the caller's answers 404 exactly like an unknown one."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from http_bridge.backend import RpcFailure
from http_bridge.context import bridge
from http_bridge.parsing import Params, bearer_token, query_params
from http_bridge.responses import answers_errors, no_store_json
from server.errors import InvalidRequest
from tokenservice.v1 import token_service_pb2 as pb

LIST_QUERY = ("pageSize", "pageToken")
END_ALL_QUERY = ("keepCurrent",)
MAX_PAGE_SIZE_DIGITS = 6
BOOLEANS = {"true": True, "false": False}
# The RPCs' field names as these routes' parameters, for details[].field.
FIELDS = {
    "page_size": "pageSize",
    "page_token": "pageToken",
    "session_id": "sessionId",
    "bearer_token": "Authorization",
    "keep_current": "keepCurrent",
}
Answer = TypeVar("Answer")


@answers_errors
async def list_sessions(request: Request) -> Response:
    """GET /customer/{tenant}/me/sessions: the caller's active sessions, newest first."""
    token = bearer_token(request)
    query = query_params(request, LIST_QUERY)
    listed = await _named(
        bridge(request).backend.list_own_sessions(
            pb.ListOwnSessionsRequest(
                tenant=request.path_params["tenant"],
                bearer_token=token,
                page_size=page_size(query),
                page_token=query.get("pageToken", ""),
            )
        )
    )
    body: dict[str, Any] = {"sessions": [session_body(s) for s in listed.sessions]}
    if listed.next_page_token:
        body["nextPageToken"] = listed.next_page_token
    return no_store_json(body)


@answers_errors
async def end_session(request: Request) -> Response:
    """DELETE /customer/{tenant}/me/sessions/{sessionId}: 204, or 404 for an id that is not an
    active session of the caller's."""
    token = bearer_token(request)
    await _named(
        bridge(request).backend.end_own_session(
            pb.EndOwnSessionRequest(
                tenant=request.path_params["tenant"],
                bearer_token=token,
                session_id=request.path_params["sessionId"],
            )
        )
    )
    return _no_content()


@answers_errors
async def end_sessions(request: Request) -> Response:
    """DELETE /customer/{tenant}/me/sessions: ends every session of the caller (with
    `keepCurrent=true`, every one but the bearer's own); 204."""
    token = bearer_token(request)
    query = query_params(request, END_ALL_QUERY)
    await _named(
        bridge(request).backend.end_own_sessions(
            pb.EndOwnSessionsRequest(
                tenant=request.path_params["tenant"],
                bearer_token=token,
                keep_current=keep_current(query),
            )
        )
    )
    return _no_content()


def page_size(query: Params) -> int:
    raw = query.get("pageSize")
    if raw is None:
        return 0
    if not raw.isdigit() or not raw.isascii() or len(raw) > MAX_PAGE_SIZE_DIGITS:
        raise InvalidRequest("pageSize must be a whole number, 0 or more", field="pageSize")
    return int(raw)


def keep_current(query: Params) -> bool:
    raw = query.get("keepCurrent", "false")
    if raw not in BOOLEANS:
        raise InvalidRequest("keepCurrent must be true or false", field="keepCurrent")
    return BOOLEANS[raw]


def session_body(listed: pb.CustomerSession) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": listed.session_id,
        "createdAt": timestamp(listed.created_at),
        "lastRefreshedAt": timestamp(listed.last_refreshed_at),
        "expiresAt": timestamp(listed.expires_at),
        "current": listed.current,
        "clientId": listed.client_id,
    }
    if listed.legal_entity_id:
        body["legalEntityId"] = listed.legal_entity_id
    return body


def timestamp(epoch_seconds: int) -> str:
    """RFC 3339 in UTC, as the reference writes its date-times."""
    moment = datetime.datetime.fromtimestamp(epoch_seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _named(call: Awaitable[Answer]) -> Answer:
    """The call's answer; a refusal names this route's parameter, not the RPC's field."""
    try:
        return await call
    except RpcFailure as failure:
        field = FIELDS.get(failure.field, failure.field)
        raise dataclasses.replace(failure, field=field) from None


def _no_content() -> Response:
    return Response(status_code=204, headers={"Cache-Control": "no-store"})
