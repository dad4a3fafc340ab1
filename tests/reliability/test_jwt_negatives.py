"""SaaS-token negatives: the service's own verifier (server.saas_verifier) and introspection of
SaaS tokens (gRPC IntrospectToken and `POST /oauth/introspect`, through both bridge backends)
reject every forgery and malformed token below; and a key rotation in the middle of traffic
breaks nothing.

Each forgery is made from a genuine token's claims; those that need a valid ES256 signature are
signed with the service's real private key (read from the store and opened with the server's
KeyCipher, as the KeyRing does), so the check that rejects them is the one under test and not the
signature. The genuine token is shown active on every path first, so an "inactive" answer means
something.

tests/integration/test_saas_token.py and tests/integration/http/test_jwks_resource_server.py
cover what an outside relying party does with PyJWT and the JWKS; this file covers the service's
own verification of the same tokens, and the rotation under load.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import inspect
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from http_bridge.app import build_app
from http_bridge.channel import ChannelBackend
from http_bridge.server import RunningHttp, start_http
from launcher.in_process import InProcessBackend
from server import admin, saas_verifier
from server.records import KeyStatus
from server.saas_verifier import SaasTokenRejected
from tests.reliability.support import LEDGER
from tests.support.harness import (  # noqa: F401 - fixtures used by name
    Harness,
    Shop,
    harness,
    settings_overrides,
)
from tests.support.http_clients import async_http_client
from tokenservice.v1 import token_service_pb2 as pb

# --- helpers ------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A JWS compact serialisation made by hand, so nothing refuses to produce it."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def hs256(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


async def private_key(service: Harness, kid: str) -> ec.EllipticCurvePrivateKey:
    """The service's real signing key for `kid`: stored encrypted, opened as the KeyRing does."""
    core = service.core
    (record,) = [r for r in await admin.list_signing_keys(core) if r.kid == kid]
    der = core.cipher.open(record.private_key_encrypted, record.kid)
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def kid_of(token: str) -> str:
    kid = jwt.get_unverified_header(token)["kid"]
    assert isinstance(kid, str)
    return kid


def verify_with_service(service: Harness, token: str, keys: dict[str, jwt.PyJWK]) -> Any:
    settings = service.core.settings
    return saas_verifier.verify(
        token,
        keys,
        issuer=settings.issuer,
        audience=settings.saas_audience,
        now=int(service.clock.now()),
    )


@dataclasses.dataclass
class Paths:
    """Every way the service verifies a SaaS token: the verifier itself, gRPC IntrospectToken,
    and POST /oauth/introspect through the in-process and the channel backends."""

    harness: Harness
    shop: Shop
    http: dict[str, httpx.AsyncClient]

    async def answers(self, token: str) -> dict[str, dict[str, Any]]:
        grpc_answer = await self.harness.introspect(token)
        answers = {"grpc": {"active": grpc_answer.active, "message": grpc_answer}}
        for name, client in self.http.items():
            response = await client.post(
                "/oauth/introspect",
                data={"token": token},
                auth=(self.shop.service_id, self.shop.service_secret),
            )
            assert response.status_code == 200, (name, response.status_code, response.text)
            assert response.headers["Cache-Control"] == "no-store"
            LEDGER.error_text(f"test_jwt_negatives {name} introspect", response.text)
            answers[name] = response.json()
        return answers

    async def rejected_everywhere(self, token: str, reason: str) -> None:
        keys = await self.harness.core.keys.verification_keys()
        with pytest.raises(SaasTokenRejected) as rejected:
            verify_with_service(self.harness, token, keys)
        message = str(rejected.value)
        LEDGER.error_text("test_jwt_negatives verifier", message)
        assert reason in message, message
        for part in token.split("."):
            assert len(part) < 8 or part not in message
        answers = await self.answers(token)
        assert answers == {
            "grpc": {"active": False, "message": pb.IntrospectTokenResponse(active=False)},
            **{name: {"active": False} for name in self.http},
        }, reason


@pytest.fixture
async def paths(harness: Harness) -> AsyncIterator[Paths]:  # noqa: F811
    shop = await harness.shop("jwtneg")
    running: list[tuple[RunningHttp, Any, httpx.AsyncClient]] = []
    for name, backend in (
        ("in_process", InProcessBackend(harness.core)),
        ("channel", ChannelBackend(harness.target)),
    ):
        app = build_app(backend, harness.core.settings)
        http = await start_http(app, "127.0.0.1:0", grace_seconds=1)
        client = async_http_client(base_url=f"http://127.0.0.1:{http.port}", timeout=30)
        running.append((http, backend, client))
        del name
    try:
        yield Paths(
            harness=harness,
            shop=shop,
            http={"in_process": running[0][2], "channel": running[1][2]},
        )
    finally:
        for http, backend, client in running:
            await client.aclose()
            await http.stop()
            await backend.close()


async def genuine(paths: Paths) -> tuple[str, dict[str, Any], pb.TokenResponse]:
    """A SaaS token from a real customer login, active on every path, and its claims."""
    response = await paths.harness.customer(paths.shop)
    token = response.saas_token
    LEDGER.secret(token, response.access_token, response.refresh_token)
    keys = await paths.harness.core.keys.verification_keys()
    claims = verify_with_service(paths.harness, token, keys)
    assert claims.customer_id == paths.shop.customer_id
    assert claims.session_id == response.session_id
    answers = await paths.answers(token)
    message = answers["grpc"]["message"]
    assert message.active
    assert message.kind == pb.TOKEN_KIND_CUSTOMER
    assert message.token_use == pb.TOKEN_USE_SAAS
    assert message.customer_id == paths.shop.customer_id
    assert message.session_id == response.session_id
    assert message.tenant == paths.shop.tenant
    assert message.email == paths.shop.email
    assert message.client_id == paths.shop.storefront_id
    assert message.exp == claims.expires_at
    for name in paths.http:
        body = answers[name]
        assert body["active"] is True, (name, body)
        assert body["token_use"] == "saas"
        assert body["kind"] == "customer"
        assert body["sub"] == paths.shop.customer_id
        assert body["session_id"] == response.session_id
        assert body["iss"] == paths.harness.core.settings.issuer
    raw = jwt.decode(token, options={"verify_signature": False})
    return token, raw, response


# --- the negatives ------------------------------------------------------------------------------


async def test_genuine_saas_token_is_active_everywhere_and_ends_with_its_session(
    paths: Paths,
) -> None:
    token, _, login = await genuine(paths)
    # validateauthtoken is for access tokens: a SaaS token there is a 401, not a validation.
    for client in paths.http.values():
        response = await client.get(
            f"/customer/{paths.shop.tenant}/validateauthtoken",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 401, response.text
    # Revoking it by itself changes nothing (it is not stored) ...
    revoked = await paths.harness.stub.RevokeToken(pb.RevokeTokenRequest(token=token))
    assert not revoked.revoked
    assert (await paths.harness.introspect(token)).active
    # ... ending its session (revoking the refresh token, RFC 7009 section 2.1) makes it
    # inactive: the claims still verify, the session is over.
    ended = await paths.harness.stub.RevokeToken(pb.RevokeTokenRequest(token=login.refresh_token))
    assert ended.revoked_count >= 2
    keys = await paths.harness.core.keys.verification_keys()
    verify_with_service(paths.harness, token, keys)
    answers = await paths.answers(token)
    assert [answer["active"] for answer in answers.values()] == [False, False, False]


async def test_alg_none_is_rejected(paths: Paths) -> None:
    token, claims, _ = await genuine(paths)
    kid = kid_of(token)
    await paths.rejected_everywhere(
        compact({"alg": "none", "typ": "JWT", "kid": kid}, claims, lambda _: b""),
        "algorithm is not allowed",
    )
    await paths.rejected_everywhere(
        # PyJWT's annotation of `key` leaves out None, the one key its "none" algorithm takes.
        jwt.encode(claims, None, algorithm="none", headers={"kid": kid}),  # type: ignore[arg-type]
        "algorithm is not allowed",
    )
    # With the genuine signature left on, too.
    signature = token.rsplit(".", 1)[1]
    unsigned = compact({"alg": "none", "kid": kid}, claims, lambda _: b"").rsplit(".", 1)[0]
    await paths.rejected_everywhere(f"{unsigned}.{signature}", "algorithm is not allowed")


async def test_hs256_keyed_with_the_public_key_is_rejected(paths: Paths) -> None:
    token, claims, _ = await genuine(paths)
    kid = kid_of(token)
    public = (await paths.harness.core.keys.verification_keys())[kid]
    pem = public.key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk_json = next(
        json.dumps(key, sort_keys=True).encode()
        for key in (await paths.harness.core.keys.jwks())["keys"]
        if key["kid"] == kid
    )
    for secret in (pem, jwk_json):
        forged = compact({"alg": "HS256", "typ": "JWT", "kid": kid}, claims, hs256(secret))
        # Well made: an HS256 check keyed with the same bytes accepts its signature (PyJWT
        # itself refuses to use a PEM as an HMAC secret, so the check is made by hand).
        signing_input, _, signature = forged.rpartition(".")
        expected = b64url(hs256(secret)(signing_input.encode()))
        assert hmac.compare_digest(signature, expected)
        await paths.rejected_everywhere(forged, "algorithm is not allowed")


async def test_unknown_crit_header_is_rejected(paths: Paths) -> None:
    token, claims, _ = await genuine(paths)
    kid = kid_of(token)
    key = await private_key(paths.harness, kid)
    public = (await paths.harness.core.keys.verification_keys())[kid]
    unknown = jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid, "crit": ["exp2"]})
    # Correctly signed by the service's key: only the crit header makes it invalid.
    signing_input, _, signature = unknown.rpartition(".")
    es256 = ECAlgorithm(ECAlgorithm.SHA256)
    assert es256.verify(
        signing_input.encode(), public.key, base64.urlsafe_b64decode(signature + "==")
    )
    await paths.rejected_everywhere(unknown, "critical header extension")
    declared = jwt.encode(
        claims, key, algorithm="ES256", headers={"kid": kid, "crit": ["exp2"], "exp2": 1}
    )
    await paths.rejected_everywhere(declared, "critical header extension")
    # PyJWT understands the b64 extension (RFC 7797) and would accept this one; the service
    # understands none and rejects it.
    es256_sign = ECAlgorithm(ECAlgorithm.SHA256)
    b64 = compact(
        {"alg": "ES256", "typ": "JWT", "kid": kid, "crit": ["b64"], "b64": True},
        claims,
        lambda data: es256_sign.sign(data, key),
    )
    assert (
        jwt.decode(
            b64,
            public,
            algorithms=["ES256"],
            audience=claims["aud"],
            options={"verify_exp": False, "verify_iat": False},
        )["sub"]
        == claims["sub"]
    )
    await paths.rejected_everywhere(b64, "critical header extension")


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "iat", "sub", "sid", "jti", "tenant"])
async def test_missing_claim_is_rejected(paths: Paths, claim: str) -> None:
    token, claims, _ = await genuine(paths)
    kid = kid_of(token)
    key = await private_key(paths.harness, kid)
    missing = {name: value for name, value in claims.items() if name != claim}
    forged = jwt.encode(missing, key, algorithm="ES256", headers={"kid": kid})
    await paths.rejected_everywhere(forged, f"the {claim} claim is missing")


async def test_issuer_must_match_exactly(paths: Paths) -> None:
    token, claims, _ = await genuine(paths)
    kid = kid_of(token)
    key = await private_key(paths.harness, kid)
    issuer = paths.harness.core.settings.issuer
    for wrong in (issuer + "x", issuer[:-1], issuer[1:-1], issuer + "/", issuer.upper(), ""):
        assert wrong != issuer
        forged = jwt.encode({**claims, "iss": wrong}, key, algorithm="ES256", headers={"kid": kid})
        await paths.rejected_everywhere(forged, "issuer is not this service")
    # PyJWT refuses to encode a list-valued iss: made by hand, signed with the real key.
    es256 = ECAlgorithm(ECAlgorithm.SHA256)
    as_list = compact(
        {"alg": "ES256", "typ": "JWT", "kid": kid},
        {**claims, "iss": [issuer]},
        lambda data: es256.sign(data, key),
    )
    await paths.rejected_everywhere(as_list, "issuer is not this service")


async def test_audience_must_match_exactly(paths: Paths) -> None:
    token, claims, _ = await genuine(paths)
    kid = kid_of(token)
    key = await private_key(paths.harness, kid)
    audience = paths.harness.core.settings.saas_audience
    for wrong in ("some-other-api", audience + "x", audience[:-1], ["some-other-api"]):
        forged = jwt.encode({**claims, "aud": wrong}, key, algorithm="ES256", headers={"kid": kid})
        await paths.rejected_everywhere(forged, "audience is not this service's")
    # The service issues a single audience; a list that merely contains it is not its token.
    listed = jwt.encode(
        {**claims, "aud": [audience, "some-other-api"]},
        key,
        algorithm="ES256",
        headers={"kid": kid},
    )
    await paths.rejected_everywhere(listed, "audience is not this service's")


async def test_unknown_kid_is_rejected_without_a_store_read(
    paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, claims, _ = await genuine(paths)
    header_segment, payload, signature = token.split(".")
    relabelled = b64url(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "x" * 43}).encode())
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(claims, stranger, algorithm="ES256", headers={"kid": "not-published"})
    no_kid = jwt.encode(claims, stranger, algorithm="ES256")

    # The key ring is fresh: an unknown kid must not make it read the store (or fetch anything).
    ring = paths.harness.core.keys
    await ring.reload()
    reads = Counter[str]()
    real_list = paths.harness.core.store.list_signing_keys

    async def counted() -> Any:
        reads["list_signing_keys"] += 1
        return await real_list()

    monkeypatch.setattr(paths.harness.core.store, "list_signing_keys", counted)
    for candidate in (f"{relabelled}.{payload}.{signature}", forged, no_kid):
        await paths.rejected_everywhere(candidate, "kid names no published key")
    assert reads["list_signing_keys"] == 0
    del header_segment


async def test_expired_token_is_rejected(paths: Paths) -> None:
    token, claims, _ = await genuine(paths)
    kid = kid_of(token)
    key = await private_key(paths.harness, kid)
    now = int(paths.harness.clock.now())
    for exp in (now, now - 1, now - 3600):
        forged = jwt.encode(
            {**claims, "iat": exp - 60, "exp": exp}, key, algorithm="ES256", headers={"kid": kid}
        )
        await paths.rejected_everywhere(forged, "expired")
    # The genuine token itself, once its 4 hours are over (by the service's clock).
    paths.harness.clock.advance(claims["exp"] - now)
    await paths.rejected_everywhere(token, "expired")


async def test_token_signed_by_another_key_claiming_a_real_kid_is_rejected(paths: Paths) -> None:
    token, claims, _ = await genuine(paths)
    kid = kid_of(token)
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(claims, stranger, algorithm="ES256", headers={"kid": kid})
    await paths.rejected_everywhere(forged, "signature does not verify")
    # And a genuine header and payload with a tampered signature.
    head, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    await paths.rejected_everywhere(f"{head}.{payload}.{flipped}", "signature does not verify")


async def test_malformed_tokens_are_inactive_not_errors(paths: Paths) -> None:
    token, claims, _ = await genuine(paths)
    head, payload, _ = token.split(".")
    for candidate in ("a.b.c", "..", f"{head}.{payload}.", f"{head}..{payload}", "e30.e30.e30"):
        await paths.rejected_everywhere(candidate, "")
    # Longer than any SaaS token: a 400 naming the field, not a verification.
    huge = f"{head}.{'A' * saas_verifier.MAX_SAAS_TOKEN}.sig"
    for client in paths.http.values():
        response = await client.post(
            "/oauth/introspect",
            data={"token": huge},
            auth=(paths.shop.service_id, paths.shop.service_secret),
        )
        assert response.status_code == 400, response.text
        assert huge not in response.text
    del claims


# --- rotation under traffic ---------------------------------------------------------------------

LOOPS = 4
# Logins per loop: before the rotation, while the new key is published but not yet signing
# (the service's clock moving through the activation delay), and once it signs.
BEFORE, DURING, AFTER = 3, 5, 4
JWKS_MAX_AGE = 60  # what GET /.well-known/jwks.json says in Cache-Control


class StrictJwksCache:
    """A verifier that honours the JWKS max-age by the service's clock and never refetches on
    an unknown kid: it keeps working through a rotation only because the service publishes a
    key `signing_key_activation_seconds` (more than max-age) before it signs with it."""

    def __init__(self, client: httpx.AsyncClient, clock: Callable[[], float]) -> None:
        self._client = client
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")

    async def key(self, kid: str) -> jwt.PyJWK:
        if self._clock() - self._fetched_at >= JWKS_MAX_AGE:
            response = await self._client.get("/.well-known/jwks.json")
            assert f"max-age={JWKS_MAX_AGE}" in response.headers["Cache-Control"]
            self._keys = {k["kid"]: jwt.PyJWK(k) for k in response.json()["keys"]}
            self._fetched_at = self._clock()
        return self._keys[kid]


def pyjwk_client(url: str) -> jwt.PyJWKClient:
    """PyJWT's own client. Its refetch cooldown (30 s) runs on the wall clock, which does not move
    while the test moves the service's clock through minutes; so it is off here, and the strict
    cache above is the verifier that proves the activation delay."""
    options: dict[str, Any] = {}
    if "cooldown_duration" in inspect.signature(jwt.PyJWKClient).parameters:
        options["cooldown_duration"] = 0
    return jwt.PyJWKClient(url, **options)


async def test_key_rotation_in_the_middle_of_traffic_breaks_nothing(paths: Paths) -> None:
    service = paths.harness
    settings = service.core.settings
    http = paths.http["in_process"]
    url = f"{http.base_url}/.well-known/jwks.json"
    old_kid = kid_of((await service.customer(paths.shop)).saas_token)
    failures: list[str] = []
    issued: list[tuple[str, str]] = []  # (kid, token)
    warm, rotated, activated = asyncio.Event(), asyncio.Event(), asyncio.Event()
    logged_in = Counter[int]()

    async def check(token: str, strict: StrictJwksCache, library: jwt.PyJWKClient) -> None:
        kid = kid_of(token)
        ahead = max(0, int(service.clock.now() - time.time()) + 5)
        claims = jwt.decode(
            token,
            await strict.key(kid),
            algorithms=["ES256"],
            audience=settings.saas_audience,
            issuer=settings.issuer,
            leeway=ahead,
        )
        key = await asyncio.to_thread(library.get_signing_key_from_jwt, token)
        jwt.decode(
            token,
            key.key,
            algorithms=["ES256"],
            audience=settings.saas_audience,
            issuer=settings.issuer,
            leeway=ahead,
        )
        assert (await service.introspect(token)).active, "gRPC introspection"
        answer = (await paths.answers(token))["in_process"]
        assert answer["active"] and answer["sub"] == claims["sub"], "HTTP introspection"

    async def loop(number: int) -> None:
        strict = StrictJwksCache(http, service.clock.now)
        library = pyjwk_client(url)
        for i in range(BEFORE + DURING + AFTER):
            if i == BEFORE:
                await rotated.wait()
            if i == BEFORE + DURING:
                await activated.wait()
            try:
                response = await service.customer(paths.shop)
                issued.append((kid_of(response.saas_token), response.saas_token))
                await check(response.saas_token, strict, library)
                logged_in[number] += 1
                if sum(logged_in.values()) >= LOOPS * BEFORE // 2:
                    warm.set()
            except Exception as error:
                failures.append(f"loop {number} login {i}: {type(error).__name__}: {error}")
                warm.set()
            await asyncio.sleep(0.01)

    async def rotate_and_let_time_pass() -> None:
        await warm.wait()
        record = await admin.rotate_signing_key(service.core)
        rotated.set()
        step = 10
        for _ in range(0, settings.signing_key_activation_seconds, step):
            await asyncio.sleep(0.05)
            assert service.core.keys.signing_key().kid != record.kid
            service.clock.advance(step)
        assert service.core.keys.signing_key().kid == record.kid
        activated.set()

    await asyncio.gather(*(loop(n) for n in range(LOOPS)), rotate_and_let_time_pass())

    assert failures == []
    kids = Counter(kid for kid, _ in issued)
    new_kid = service.core.keys.signing_key().kid
    assert set(kids) == {old_kid, new_kid}, kids
    assert kids[old_kid] > 0 and kids[new_kid] > 0, kids
    assert sum(kids.values()) == LOOPS * (BEFORE + DURING + AFTER)

    # Every token still verifies, the old kid's too, until the old key is retired ...
    keys = await service.core.keys.verification_keys()
    for _, token in issued:
        verify_with_service(service, token, keys)
        assert (await service.introspect(token)).active
    await admin.retire_signing_key(service.core, old_kid)
    statuses = {r.kid: r.status for r in await admin.list_signing_keys(service.core)}
    assert statuses[old_kid] is KeyStatus.RETIRED
    # ... then exactly the old kid's stop.
    keys = await service.core.keys.verification_keys()
    for kid, token in issued:
        active = (await service.introspect(token)).active
        assert active is (kid == new_kid), kid
        if kid == old_kid:
            with pytest.raises(SaasTokenRejected, match="kid names no published key"):
                verify_with_service(service, token, keys)
    LEDGER.record(
        "test_jwt_negatives rotation",
        loops=LOOPS,
        tokens=len(issued),
        old_kid_tokens=kids[old_kid],
        new_kid_tokens=kids[new_kid],
        failures=len(failures),
    )
