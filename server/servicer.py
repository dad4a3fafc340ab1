"""TokenService: proto <-> domain conversion only, no business logic.

`TokenCalls` is the transport-free entry (request message in, response out, the caller's address
passed explicitly); `TokenServicer` serves it over gRPC, reading the address from the call. The
HTTP bridge calls TokenCalls in-process, so what a client sees over either transport is decided
once, in the grants.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from server import customer_sessions, introspection, origins, revocation, revocation_watch
from server.core import Core
from server.customer_sessions import SessionPage
from server.errors import UnsupportedGrantType
from server.grants import (
    anonymous,
    anonymous_token_refresh,
    client_credentials,
    customer_password,
    refresh,
    social_login,
    token_exchange,
)
from server.proxies import grpc_peer_host
from server.records import (
    ClientCredentials,
    Introspection,
    IssuedTokens,
    SessionContext,
    TokenKind,
    TokenUse,
)
from server.revocation_feed import FeedMessage
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

KIND_TO_PROTO = {
    TokenKind.ANONYMOUS: pb.TOKEN_KIND_ANONYMOUS,
    TokenKind.CUSTOMER: pb.TOKEN_KIND_CUSTOMER,
    TokenKind.SERVICE: pb.TOKEN_KIND_SERVICE,
}
USE_TO_PROTO = {
    TokenUse.ACCESS: pb.TOKEN_USE_ACCESS,
    TokenUse.REFRESH: pb.TOKEN_USE_REFRESH,
    TokenUse.SAAS: pb.TOKEN_USE_SAAS,
}
GRANTS = "client_credentials, anonymous, customer_password, token_exchange or social_login"
JWK_FIELDS = ("kty", "crv", "x", "y", "kid", "use", "alg")
# The HTTP client's address, sent by a standalone bridge (http_bridge/channel.py); believed only
# from a peer listed in TOKENSERVICE_TRUSTED_PROXIES.
FORWARDED_FOR = "x-forwarded-for"


class TokenCalls:
    """TokenService's methods without a transport: a request message in, a response message
    out, the caller's address given explicitly. The gRPC servicer below and the HTTP bridge's
    in-process backend (launcher/in_process.py) both call these."""

    def __init__(self, core: Core) -> None:
        self._core = core

    async def issue_token(
        self, request: pb.IssueTokenRequest, *, client_address: str = ""
    ) -> pb.TokenResponse:
        core = self._core
        grant = request.WhichOneof("grant")
        if grant == "client_credentials":
            cc = request.client_credentials
            issued = await client_credentials.issue(core, cc.client_id, cc.client_secret, cc.scope)
        elif grant == "anonymous":
            an = request.anonymous
            ctx = session_context(an.context)
            issued = await anonymous.issue(core, an.tenant, an.client_id, ctx)
        elif grant == "customer_password":
            cp = request.customer_password
            issued = await customer_password.issue(
                core,
                cp.tenant,
                cp.email,
                cp.password,
                cp.anonymous_token,
                client_address=client_address,
            )
        elif grant == "token_exchange":
            te = request.token_exchange
            issued = await token_exchange.issue(
                core,
                te.tenant,
                te.subject_token,
                te.anonymous_token,
                subject_token_type=te.subject_token_type,
                config=te.config,
            )
        elif grant == "social_login":
            sl = request.social_login
            code = social_login.AuthorizationCode(
                sl.code, sl.redirect_uri, sl.code_verifier, sl.nonce
            )
            issued = await social_login.issue(
                core, sl.tenant, code, sl.anonymous_token, config=sl.config
            )
        else:
            raise UnsupportedGrantType(f"a grant is required: {GRANTS}", field="grant")
        return token_response(issued)

    async def refresh_token(self, request: pb.RefreshTokenRequest) -> pb.TokenResponse:
        if request.anonymous_token and not request.refresh_token:
            issued = await anonymous_token_refresh.refresh(
                self._core,
                request.tenant,
                request.client_id,
                request.anonymous_token,
                session_context(request.context),
            )
            return token_response(issued)
        issued = await refresh.refresh(
            self._core,
            request.tenant,
            request.refresh_token,
            client_id=request.client_id,
            legal_entity_id=request.legal_entity_id,
            access_token=request.access_token,
            context=session_context(request.context),
            superseded_anonymous_token=request.anonymous_token,
        )
        return token_response(issued)

    async def introspect_token(
        self, request: pb.IntrospectTokenRequest
    ) -> pb.IntrospectTokenResponse:
        look = introspection.bearer if request.as_bearer else introspection.introspect
        result = await look(self._core, request.token, request.tenant, caller_of(request))
        return introspection_response(result)

    async def revoke_token(self, request: pb.RevokeTokenRequest) -> pb.RevokeTokenResponse:
        result = await revocation.revoke(
            self._core,
            request.token,
            request.tenant,
            end_session=request.end_session,
            caller=caller_of(request),
            bearer_token=request.bearer_token,
        )
        return pb.RevokeTokenResponse(revoked=result.revoked, revoked_count=result.revoked_count)

    async def get_jwks(self, request: pb.GetJwksRequest) -> pb.GetJwksResponse:
        jwks = await self._core.keys.jwks()
        return pb.GetJwksResponse(
            keys=[pb.JsonWebKey(**{f: key.get(f, "") for f in JWK_FIELDS}) for key in jwks["keys"]]
        )

    async def get_allowed_origins(
        self, request: pb.GetAllowedOriginsRequest
    ) -> pb.GetAllowedOriginsResponse:
        allowed = await origins.of_tenant(self._core, request.tenant)
        return pb.GetAllowedOriginsResponse(allowed_origins=allowed)

    async def list_own_sessions(
        self, request: pb.ListOwnSessionsRequest
    ) -> pb.ListSessionsResponse:
        page = await customer_sessions.list_own(
            self._core,
            request.tenant,
            request.bearer_token,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return sessions_response(page)

    async def end_own_session(self, request: pb.EndOwnSessionRequest) -> pb.EndSessionsResponse:
        await customer_sessions.end_own(
            self._core, request.tenant, request.bearer_token, request.session_id
        )
        return pb.EndSessionsResponse(ended_count=1)

    async def end_own_sessions(self, request: pb.EndOwnSessionsRequest) -> pb.EndSessionsResponse:
        ended = await customer_sessions.end_all_own(
            self._core, request.tenant, request.bearer_token, keep_current=request.keep_current
        )
        return pb.EndSessionsResponse(ended_count=ended)

    async def watch_revocations(
        self, request: pb.WatchRevocationsRequest
    ) -> AsyncIterator[pb.RevocationEvent]:
        """Authorised before it returns (an error, not a stream); the events then follow."""
        caller = ClientCredentials(request.caller.client_id, request.caller.client_secret)
        messages = await revocation_watch.watch(self._core, caller, request.after)
        return (revocation_event(message) async for message in messages)


class TokenServicer(pb_grpc.TokenServiceServicer):
    """TokenService over gRPC: TokenCalls, with the caller's address read from the call."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._calls = TokenCalls(core)

    async def IssueToken(
        self, request: pb.IssueTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.TokenResponse:
        address = grpc_client_address(self._core, context)
        return await self._calls.issue_token(request, client_address=address)

    async def RefreshToken(
        self, request: pb.RefreshTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.TokenResponse:
        return await self._calls.refresh_token(request)

    async def IntrospectToken(
        self, request: pb.IntrospectTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.IntrospectTokenResponse:
        return await self._calls.introspect_token(request)

    async def RevokeToken(
        self, request: pb.RevokeTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeTokenResponse:
        return await self._calls.revoke_token(request)

    async def GetJwks(
        self, request: pb.GetJwksRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetJwksResponse:
        return await self._calls.get_jwks(request)

    async def GetAllowedOrigins(
        self, request: pb.GetAllowedOriginsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetAllowedOriginsResponse:
        return await self._calls.get_allowed_origins(request)

    async def ListOwnSessions(
        self, request: pb.ListOwnSessionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSessionsResponse:
        return await self._calls.list_own_sessions(request)

    async def EndOwnSession(
        self, request: pb.EndOwnSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.EndSessionsResponse:
        return await self._calls.end_own_session(request)

    async def EndOwnSessions(
        self, request: pb.EndOwnSessionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.EndSessionsResponse:
        return await self._calls.end_own_sessions(request)

    async def WatchRevocations(
        self, request: pb.WatchRevocationsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RevocationEvent]:
        async for event in await self._calls.watch_revocations(request):
            yield event


def grpc_client_address(core: Core, context: grpc.aio.ServicerContext) -> str:
    """The caller's address for the login throttle: the gRPC peer's host, or the
    x-forwarded-for metadata a trusted proxy (a standalone bridge) sent (server/proxies.py)."""
    peer = grpc_peer_host(context.peer() or "")
    forwarded = ""
    if core.abuse.trusted_proxies:
        for key, value in context.invocation_metadata() or ():
            if key == FORWARDED_FOR and isinstance(value, str):
                forwarded = value
    return core.abuse.client_address(peer, forwarded)


def caller_of(
    request: pb.IntrospectTokenRequest | pb.RevokeTokenRequest,
) -> ClientCredentials | None:
    if not request.HasField("caller"):
        return None
    return ClientCredentials(request.caller.client_id, request.caller.client_secret)


def session_context(message: pb.SessionContext) -> SessionContext:
    """The message's fields, unchecked (the grants check them); proto3's "" is not given."""
    return SessionContext(
        currency=message.currency or None,
        site_code=message.site_code or None,
        language=message.language or None,
        target_location=message.target_location or None,
    )


def token_response(issued: IssuedTokens) -> pb.TokenResponse:
    return pb.TokenResponse(
        access_token=issued.access_token,
        token_type=issued.token_type,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
        refresh_token_expires_in=issued.refresh_token_expires_in,
        session_id=issued.session_id,
        scope=issued.scope,
        saas_token=issued.saas_token,
        session_idle_time=issued.session_idle_time,
        kind=KIND_TO_PROTO[issued.kind],
        external_access_token=issued.external_access_token,
        external_id_token=issued.external_id_token,
    )


def introspection_response(result: Introspection) -> pb.IntrospectTokenResponse:
    if not result.active or result.kind is None or result.use is None:
        return pb.IntrospectTokenResponse(active=False)
    return pb.IntrospectTokenResponse(
        active=True,
        kind=KIND_TO_PROTO[result.kind],
        token_use=USE_TO_PROTO[result.use],
        tenant=result.tenant,
        client_id=result.client_id,
        scope=result.scope,
        expires_in=result.expires_in,
        exp=result.exp,
        iat=result.iat,
        session_id=result.session_id,
        customer_id=result.customer_id,
        email=result.email,
        legal_entity_id=result.legal_entity_id,
        token_type=result.token_type,
        cache_seconds=result.cache_seconds,
    )


def sessions_response(page: SessionPage) -> pb.ListSessionsResponse:
    return pb.ListSessionsResponse(
        sessions=[
            pb.CustomerSession(
                session_id=listed.session_id,
                created_at=listed.created_at,
                last_refreshed_at=listed.updated_at,
                expires_at=listed.expires_at,
                current=listed.session_id == page.current_session_id,
                client_id=listed.client_id,
                legal_entity_id=listed.legal_entity_id or "",
            )
            for listed in page.sessions
        ],
        next_page_token=page.next_page_token,
    )


def revocation_event(message: FeedMessage) -> pb.RevocationEvent:
    heartbeat = not (message.reset or message.fingerprints or message.sessions)
    return pb.RevocationEvent(
        position=str(message.position),
        reset=message.reset,
        token_sha256=message.fingerprints,
        session_ids=message.sessions,
        revoked_at=message.revoked_at,
        heartbeat=heartbeat,
    )
