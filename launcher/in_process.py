"""The bridge's backend inside `tokenservice serve`: the TokenService handlers called in the same
process, with no network hop, the same servicer code the gRPC server runs, and domain errors
turned into the same (code, reason) the gRPC error interceptor would send
(http_bridge/errors.py's `failure_of`). It lives here, not in http_bridge/, because it is the
one piece of the bridge that needs the whole core (store, passwords, keys): the bridge itself
reaches the core only through a TokenBackend, so the standalone bridge loads none of it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc

from http_bridge.errors import failure_of
from server.core import Core
from server.errors import ServerError, TokenServiceError
from server.servicer import TokenServicer
from tokenservice.v1 import token_service_pb2 as pb

log = logging.getLogger("tokenservice.http")
Response = TypeVar("Response")


class CallerContext:
    """What the servicer reads of its context in-process: peer(), answered with the HTTP
    client's address in grpc's own format, so that the login throttle counts the client, not
    the bridge's loopback address. Nothing else of a ServicerContext is used."""

    def __init__(self, address: str) -> None:
        self._address = address

    def peer(self) -> str:
        if not self._address:
            return ""
        if ":" in self._address:
            return f"ipv6:[{self._address}]:0"
        return f"ipv4:{self._address}:0"

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()


def caller_context(client_address: str) -> grpc.aio.ServicerContext:
    return cast(grpc.aio.ServicerContext, CallerContext(client_address))


class InProcessBackend:
    def __init__(self, core: Core) -> None:
        self._core = core
        self._servicer = TokenServicer(core)

    async def issue_token(
        self, request: pb.IssueTokenRequest, *, client_address: str = ""
    ) -> pb.TokenResponse:
        return await _call(self._servicer.IssueToken, request, client_address)

    async def refresh_token(self, request: pb.RefreshTokenRequest) -> pb.TokenResponse:
        return await _call(self._servicer.RefreshToken, request)

    async def introspect_token(
        self, request: pb.IntrospectTokenRequest
    ) -> pb.IntrospectTokenResponse:
        return await _call(self._servicer.IntrospectToken, request)

    async def revoke_token(self, request: pb.RevokeTokenRequest) -> pb.RevokeTokenResponse:
        return await _call(self._servicer.RevokeToken, request)

    async def get_jwks(self, request: pb.GetJwksRequest) -> pb.GetJwksResponse:
        return await _call(self._servicer.GetJwks, request)

    async def get_allowed_origins(
        self, request: pb.GetAllowedOriginsRequest
    ) -> pb.GetAllowedOriginsResponse:
        return await _call(self._servicer.GetAllowedOrigins, request)

    async def ready(self) -> bool:
        try:
            await self._core.store.ping()
        except TokenServiceError:
            return False
        return True

    async def close(self) -> None:
        return None


async def _call(
    method: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Response]],
    request: Any,
    client_address: str = "",
) -> Response:
    try:
        return await method(request, caller_context(client_address))
    except TokenServiceError as error:
        raise failure_of(error) from None
    except Exception as error:
        log.error("in-process call failed with %s", type(error).__name__, exc_info=True)
        raise failure_of(ServerError("internal error")) from None
