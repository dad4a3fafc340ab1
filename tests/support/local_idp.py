"""A small OpenID provider in this process, over real HTTP on 127.0.0.1 (a thread), for the
tests that need to make one misbehave on purpose: a JWKS that rotates, answers a redirect, a
huge body or a 500, or is not there at all; and a token endpoint redeeming the authorization
codes a test hands out (with PKCE). Tokens are RS256 (or ES256) JWTs signed with PyJWT.

The real provider of the tests is node-oidc-provider (tests/js/oidc_provider.mjs); this one is
for what a real provider cannot be asked to do.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import http.server
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.records import IdentityProviderRecord


@dataclasses.dataclass
class SigningKey:
    kid: str
    private: Any
    alg: str

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


def new_key(alg: str = "RS256") -> SigningKey:
    private: Any
    if alg.startswith("ES"):
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(secrets.token_hex(8), private, alg)


@dataclasses.dataclass
class Grant:
    email: str
    redirect_uri: str
    challenge: str
    nonce: str


class LocalIdp:
    """Serving over HTTP: `with LocalIdp() as idp:`, `idp.issuer` is its base URL. Not
    serving (`serve=False`, the unit tests): https://idp.test, reached through
    `idp.transport()` in place of the network."""

    def __init__(
        self, *, audience: str = "storefront", client_id: str = "shop-web", serve: bool = True
    ) -> None:
        self.audience = audience
        self.client_id = client_id
        self.client_secret = "local-idp-client-secret"
        self.keys: list[SigningKey] = [new_key()]
        self.clock: Callable[[], float] = time.time  # what iat and exp count from
        self.jwks_mode = "ok"  # ok | huge | redirect | error | garbage
        self.requests: Counter[str] = Counter()
        self._grants: dict[str, Grant] = {}
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        if serve:
            self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def issuer(self) -> str:
        if self._server is None:
            return "https://idp.test"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def transport(self) -> httpx.MockTransport:
        """The provider without a network (unit tests): the same answers, in-process."""

        def handle(request: httpx.Request) -> httpx.Response:
            path = request.url.path
            self.requests[f"{request.method} {path}"] += 1
            if request.method == "GET" and path == "/jwks":
                status, headers, body = self.jwks_answer()
                return httpx.Response(status, headers=headers, stream=_Stream(body))
            if request.method == "POST" and path == "/token":
                form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
                status, answer = self.token_answer(form, request.headers.get("authorization", ""))
                body = json.dumps(answer).encode()
                headers = {"Content-Type": "application/json"}
                return httpx.Response(status, headers=headers, stream=_Stream(body))
            return httpx.Response(404)

        return httpx.MockTransport(handle)

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    def record(self, tenant: str, **fields: Any) -> IdentityProviderRecord:
        """This provider as tenant `tenant` trusts it, for social login too: name "default",
        its issuer, JWKS, audience, client and token endpoint (`fields` override any)."""
        given: dict[str, Any] = {
            "tenant": tenant,
            "name": "default",
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "audience": self.audience,
            "created_at": 0,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "token_endpoint": self.token_endpoint,
        }
        return IdentityProviderRecord(**{**given, **fields})

    def __enter__(self) -> LocalIdp:
        if self._server is not None:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stops answering: the port refuses connections from now on."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def rotate(self, *, keep_old: bool = True) -> SigningKey:
        """A new signing key, published first; the old ones stay published when `keep_old`."""
        key = new_key(self.keys[0].alg)
        self.keys = [key, *self.keys] if keep_old else [key]
        return key

    def token(
        self,
        who: str = "ann@example.com",
        *,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
        lifetime: int = 300,
        now: int | None = None,
        **claims: Any,
    ) -> str:
        """A JWT of this provider about `who` (its email claim, and its sub derived from it),
        claims overridable (None leaves one out)."""
        key = key or self.keys[0]
        issued = int(self.clock()) if now is None else now
        body = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": f"sub-{hashlib.sha256(who.encode()).hexdigest()[:12]}",
            "email": who,
            "email_verified": True,
            "iat": issued,
            "exp": issued + lifetime,
            **claims,
        }
        return jwt.encode(
            {k: v for k, v in body.items() if v is not None},
            key.private,
            algorithm=key.alg,
            headers={"kid": key.kid, **(headers or {})},
        )

    def authorization_code(
        self, email: str, redirect_uri: str, verifier: str = "", nonce: str = ""
    ) -> str:
        """A code as the provider's authorization endpoint would redirect with."""
        challenge = ""
        if verifier:
            digest = hashlib.sha256(verifier.encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._grants[code] = Grant(email, redirect_uri, challenge, nonce)
        return code

    # --- what the HTTP handler answers -------------------------------------------------------

    def jwks_answer(self) -> tuple[int, dict[str, str], bytes]:
        if self.jwks_mode == "huge":
            filler = json.dumps({"keys": [], "pad": "x" * (2 * 1024 * 1024)}).encode()
            return 200, {"Content-Type": "application/json"}, filler
        if self.jwks_mode == "redirect":
            return 302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""
        if self.jwks_mode == "error":
            return 500, {"Content-Type": "text/plain"}, b"internal error"
        if self.jwks_mode == "garbage":
            return 200, {"Content-Type": "text/html"}, b"<html>not json</html>"
        body = json.dumps({"keys": [key.public_jwk() for key in self.keys]}).encode()
        return 200, {"Content-Type": "application/json"}, body

    def token_answer(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        expected = "Basic " + base64.b64encode(
            f"{self.client_id}:{self.client_secret}".encode()
        ).decode("ascii")
        if not secrets.compare_digest(authorization, expected):
            return 401, {"error": "invalid_client"}
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)
        if form.get("grant_type") != "authorization_code" or grant is None:
            return 400, {"error": "invalid_grant"}
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant"}
        if grant.challenge:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
                return 400, {"error": "invalid_grant"}
        id_token = self.token(
            grant.email, aud=self.client_id, nonce=grant.nonce or None, azp=self.client_id
        )
        return 200, {
            "access_token": secrets.token_urlsafe(24),
            "id_token": id_token,
            "token_type": "Bearer",
            "expires_in": 300,
        }


def _handler(idp: LocalIdp) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            idp.requests[f"GET {self.path}"] += 1
            if self.path == "/jwks":
                self._answer(*idp.jwks_answer())
            elif self.path == "/.well-known/openid-configuration":
                document = {
                    "issuer": idp.issuer,
                    "jwks_uri": idp.jwks_uri,
                    "token_endpoint": idp.token_endpoint,
                }
                self._answer(
                    200, {"Content-Type": "application/json"}, json.dumps(document).encode()
                )
            else:
                self._answer(404, {}, b"")

        def do_POST(self) -> None:
            idp.requests[f"POST {self.path}"] += 1
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length).decode()
            form = {name: values[0] for name, values in parse_qs(raw).items()}
            if self.path != "/token":
                self._answer(404, {}, b"")
                return
            status, body = idp.token_answer(form, self.headers.get("Authorization", ""))
            self._answer(status, {"Content-Type": "application/json"}, json.dumps(body).encode())

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # The service may stop reading (an oversized answer): as it should.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

    return Handler


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class _Stream(httpx.AsyncByteStream):
    """A body delivered as a network's would be: in chunks, unread until asked for."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._body), 65536):
            yield self._body[start : start + 65536]
