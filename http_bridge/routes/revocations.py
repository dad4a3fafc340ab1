"""`GET /oauth/revocations`: the revocation feed as Server-Sent Events (the WHATWG HTML
standard's `text/event-stream`), for resource servers without gRPC: WatchRevocations, one
event per message, on the same handlers.

The caller authenticates with HTTP Basic only, as a service client: a secret in a query string
ends up in access logs and proxies' histories. It resumes with `Last-Event-ID`, the header an
EventSource sends by itself when it reconnects, or `?after=`; the header wins. Each event has
its position as `id`, a name (`revocation`, `reset`, `heartbeat`) and JSON `data`
(`token_sha256`, `session_ids`, `revoked_at`). The first event carries `retry: 1000`, so that
a client reconnects after a second, not the default three.

Whatever refuses the watch (credentials, a bad position, the watcher limit, an unreachable
store) is decided before the first event and answered as an ordinary error response. Once
streaming, a failure, or the server draining, ends the stream; the client reconnects with its
last id and misses nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from http_bridge.backend import RpcFailure
from http_bridge.context import bridge
from http_bridge.parsing import basic_credentials
from http_bridge.responses import answers_errors
from server.errors import InvalidClient
from tokenservice.v1 import token_service_pb2 as pb

RECONNECT_MS = 1000
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


@answers_errors
async def watch(request: Request) -> Response:
    caller = basic_credentials(request)
    if caller is None:
        raise InvalidClient("HTTP Basic authentication of a service client is required")
    after = request.headers.get("last-event-id") or request.query_params.get("after", "")
    authentication = pb.ClientAuthentication(
        client_id=caller.client_id, client_secret=caller.client_secret
    )
    events = bridge(request).backend.watch_revocations(
        pb.WatchRevocationsRequest(caller=authentication, after=after)
    )
    first = await anext(events)
    return StreamingResponse(
        _stream(first, events), media_type="text/event-stream", headers=HEADERS
    )


async def _stream(
    first: pb.RevocationEvent, events: AsyncIterator[pb.RevocationEvent]
) -> AsyncIterator[bytes]:
    yield f"retry: {RECONNECT_MS}\n".encode() + frame(first)  # one event: a lone retry is one
    try:
        async for event in events:
            yield frame(event)
    except RpcFailure:
        return  # ended by the server (draining, or the remote one lost): the client resumes


def frame(event: pb.RevocationEvent) -> bytes:
    """One event: its position, its name and its data, each on a line of its own."""
    name = "reset" if event.reset else "heartbeat" if event.heartbeat else "revocation"
    data = json.dumps(
        {
            "token_sha256": list(event.token_sha256),
            "session_ids": list(event.session_ids),
            "revoked_at": event.revoked_at,
        },
        separators=(",", ":"),
    )
    return f"id: {event.position}\nevent: {name}\ndata: {data}\n\n".encode()
