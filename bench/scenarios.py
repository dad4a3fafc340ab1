"""What is sent: every scenario of the service with request bodies holding live tokens minted
at the start of the run, the bare ceilings' (the service's own request bodies, answered with
the bytes of the service's real answers) and the peers' (the same two requests on their own
routes, with tokens they issued)."""

from __future__ import annotations

import dataclasses
import json
import secrets
import urllib.parse
import urllib.request

import grpc

from bench import ceilings, peers
from bench.load import (
    Scenario,
    grpc_frame,
)
from bench.servers import FORM, Service
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

SERVICE = "/tokenservice.v1.TokenService/"


# --- what is sent -------------------------------------------------------------------------------


def rpc(message: object) -> bytes:
    return grpc_frame(message.SerializeToString())  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True)
class Samples:
    """Real answers of the service, whose sizes the bare ceilings answer with."""

    grpc_introspection: bytes  # a serialized IntrospectTokenResponse of an active token
    http_introspection: bytes  # the JSON body of POST /oauth/introspect


def scenarios(service: Service) -> tuple[list[Scenario], Samples]:
    """Every scenario of the service, with request bodies holding live tokens minted now."""
    f = service.fixtures
    tenant = f["tenant"]
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = pb_grpc.TokenServiceStub(channel)

        def anonymous(client_id: str) -> pb.TokenResponse:
            grant = pb.AnonymousGrant(tenant=tenant, client_id=client_id)
            response: pb.TokenResponse = stub.IssueToken(pb.IssueTokenRequest(anonymous=grant))
            return response

        seen = anonymous(f["storefront_id"]).access_token
        introspection = stub.IntrospectToken(pb.IntrospectTokenRequest(token=seen, tenant=tenant))
        assert introspection.active
        steady = anonymous(f["steady_storefront_id"])
        login_session = anonymous(f["storefront_id"]).access_token
    never_seen = secrets.token_urlsafe(32)

    introspect_seen = rpc(pb.IntrospectTokenRequest(token=seen, tenant=tenant))
    client_credentials = pb.ClientCredentialsGrant(
        client_id=f["service_id"], client_secret=f["service_secret"]
    )
    service_form = {"client_id": f["service_id"], "client_secret": f["service_secret"]}
    introspect_form = urllib.parse.urlencode({"token": seen, **service_form}).encode()
    with urllib.request.urlopen(  # noqa: S310 - loopback
        urllib.request.Request(  # noqa: S310 - loopback
            service.http_url + "/oauth/introspect",
            data=introspect_form,
            headers={"content-type": FORM.split(": ")[1]},
        ),
        timeout=10,
    ) as answer:
        http_introspection = answer.read()
    listed = [
        Scenario(
            "grpc_noop",
            "ours: own-stack no-op (our interceptors, no work)",
            "grpc",
            "/bench.Noop/Call",
            introspect_seen,
            ceiling="bare_grpc",
            expect="active",
        ),
        Scenario(
            "introspect_seen",
            "IntrospectToken, token seen before",
            "grpc",
            SERVICE + "IntrospectToken",
            introspect_seen,
            ceiling="bare_grpc",
            expect="active",
        ),
        Scenario(
            "introspect_unseen",
            "IntrospectToken, token never seen",
            "grpc",
            SERVICE + "IntrospectToken",
            rpc(pb.IntrospectTokenRequest(token=never_seen, tenant=tenant)),
            ceiling="bare_grpc",
            expect="inactive",
        ),
        Scenario(
            "issue_client_credentials",
            "IssueToken client_credentials",
            "grpc",
            SERVICE + "IssueToken",
            rpc(pb.IssueTokenRequest(client_credentials=client_credentials)),
            ceiling="bare_grpc",
            expect="token",
        ),
        Scenario(
            "issue_anonymous",
            "IssueToken anonymous",
            "grpc",
            SERVICE + "IssueToken",
            rpc(
                pb.IssueTokenRequest(
                    anonymous=pb.AnonymousGrant(tenant=tenant, client_id=f["storefront_id"])
                )
            ),
            ceiling="bare_grpc",
            expect="token",
        ),
        Scenario(
            "refresh",
            "RefreshToken (client with rotation off)",
            "grpc",
            SERVICE + "RefreshToken",
            rpc(
                pb.RefreshTokenRequest(
                    tenant=tenant,
                    client_id=f["steady_storefront_id"],
                    refresh_token=steady.refresh_token,
                )
            ),
            ceiling="bare_grpc",
            expect="token",
        ),
        Scenario(
            "customer_login",
            "IssueToken customer password (argon2id)",
            "grpc",
            SERVICE + "IssueToken",
            rpc(
                pb.IssueTokenRequest(
                    customer_password=pb.CustomerPasswordGrant(
                        tenant=tenant,
                        email=f["email"],
                        password=f["password"],
                        anonymous_token=login_session,
                    )
                )
            ),
            ceiling="argon2",
            requests_factor=0.01,
            expect="token",
        ),
        Scenario(
            "http_noop",
            "ours: own-stack no-op route (our middleware, no work)",
            "http",
            "/bench/noop",
            introspect_form,
            headers=(FORM,),
            ceiling="bare_http",
            expect="ok",
        ),
        Scenario(
            "http_validate",
            "HTTP GET validateauthtoken",
            "http",
            f"/customer/{tenant}/validateauthtoken",
            headers=(f"authorization: Bearer {seen}",),
            ceiling="bare_http",
            expect="ok",
        ),
        Scenario(
            "http_introspect",
            "HTTP POST /oauth/introspect",
            "http",
            "/oauth/introspect",
            introspect_form,
            headers=(FORM,),
            ceiling="bare_http",
            expect="active",
        ),
        Scenario(
            "http_token",
            "HTTP POST /oauth/token client_credentials",
            "http",
            "/oauth/token",
            urllib.parse.urlencode({"grant_type": "client_credentials", **service_form}).encode(),
            headers=(FORM,),
            ceiling="bare_http",
            expect="token",
            introspect_path="/oauth/introspect",
        ),
    ]
    return listed, Samples(introspection.SerializeToString(), http_introspection)


def ceiling_scenarios(samples: Samples, service_scenarios: list[Scenario]) -> list[Scenario]:
    """The bare ceilings, sent the service's own request bodies (IntrospectToken's, and POST
    /oauth/introspect's form)."""
    by_name = {s.name: s for s in service_scenarios}
    return [
        Scenario(
            "bare_grpc",
            "bare grpc.aio no-op (ceiling)",
            "grpc",
            ceilings.GRPC_METHOD,
            by_name["introspect_seen"].body,
            server="bare_grpc",
            expect="active",
        ),
        Scenario(
            "bare_http",
            "bare uvicorn + Starlette no-op (ceiling)",
            "http",
            ceilings.HTTP_PATH,
            by_name["http_introspect"].body,
            headers=(FORM,),
            server="bare_http",
            expect="ok",
        ),
    ]


def post_form(url: str, form: dict[str, str]) -> dict[str, object]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url, data=urllib.parse.urlencode(form).encode(), headers={"content-type": FORM[14:]}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - loopback
        parsed: dict[str, object] = json.loads(answer.read())
        return parsed


def peer_introspection(peer: peers.Peer) -> bytes:
    """An introspection request body for a token the peer issues now. Made afresh before every
    introspection measurement: node-oidc-provider's in-memory adapter keeps only its 1,000 most
    recent entries, so the token made at the start is forgotten once the token scenario has
    run, and its introspections would measure `active: false` answers (the spot-check says so)."""
    plain = peer.clients["plain"]
    grant = {"grant_type": "client_credentials", **plain}
    token = post_form(peer.http_url + peer.token_path, grant)
    return urllib.parse.urlencode({"token": str(token["access_token"]), **plain}).encode()


def renewed(scenario: Scenario, running: dict[str, peers.Peer]) -> Scenario:
    """The scenario as it is to be sent now: a peer's introspection with a fresh token."""
    peer = running.get(scenario.server)
    if peer is None or scenario.name != f"{peer.name}_introspect":
        return scenario
    return dataclasses.replace(scenario, body=peer_introspection(peer))


def peer_scenarios(peer: peers.Peer, in_flight: tuple[int, ...]) -> list[Scenario]:
    """The same two requests as the service's /oauth/token and /oauth/introspect scenarios, in
    the peer's own routes, with a token the peer issued just now (renewed before every
    introspection measurement, see peer_introspection)."""
    plain = peer.clients["plain"]
    token_form = urllib.parse.urlencode({"grant_type": "client_credentials", **plain}).encode()
    introspect_form = peer_introspection(peer).decode()
    secret = " (plain secret)" if "hashed" in peer.clients else ""
    listed = [
        Scenario(
            f"{peer.name}_token",
            f"{peer.label}: token client_credentials{secret}",
            "http",
            peer.token_path,
            token_form,
            headers=(FORM,),
            ceiling="bare_http",
            server=peer.name,
            expect="token",
            introspect_path=peer.introspect_path,
        ),
        Scenario(
            f"{peer.name}_introspect",
            f"{peer.label}: introspection",
            "http",
            peer.introspect_path,
            introspect_form.encode(),
            headers=(FORM,),
            ceiling="bare_http",
            server=peer.name,
            expect="active",
        ),
    ]
    if "hashed" in peer.clients:
        hashed_form = {"grant_type": "client_credentials", **peer.clients["hashed"]}
        listed.append(
            Scenario(
                f"{peer.name}_token_hashed",
                f"{peer.label}: token client_credentials (default hashed secret)",
                "http",
                peer.token_path,
                urllib.parse.urlencode(hashed_form).encode(),
                headers=(FORM,),
                ceiling="bare_http",
                requests_factor=0.005,
                server=peer.name,
                expect="token",
                introspect_path=peer.introspect_path,
                in_flight=in_flight[:1],  # PBKDF2 at a few per second: the lowest load only
            )
        )
    return listed
