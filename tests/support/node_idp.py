"""node-oidc-provider (tests/js/oidc_provider.mjs) as a process on 127.0.0.1: started with a
private JWKS this module writes, waited for until it prints that it listens, and restarted on
the same port and issuer with other keys (a key rotation as the service sees it)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.http_clients import async_http_client
from tests.support.outside_tools import JS_DIR, need_node
from tests.support.ports import free_port

SCRIPT = JS_DIR / "oidc_provider.mjs"
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never fetched: the code is read off the redirect
BACKEND = ("storefront-backend", "storefront-backend-secret")
SHOP_WEB = ("shop-web", "shop-web-secret")
AUDIENCE = "urn:storefront"
START_TIMEOUT = 60.0  # seconds; node starts in under one, but the CI box is busy


def private_jwk() -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    return {**jwk, "kid": secrets.token_hex(8), "alg": "RS256", "use": "sig"}


class NodeIdp:
    def __init__(self, node: str, directory: Path) -> None:
        self._node = node
        self._directory = directory
        self.port = free_port()
        self.keys = [private_jwk()]
        self._process: asyncio.subprocess.Process | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        keys = self._directory / f"keys-{secrets.token_hex(4)}.json"
        keys.write_text(json.dumps({"keys": self.keys}), encoding="utf-8")
        keys.chmod(0o600)
        env = {
            **os.environ,
            "PORT": str(self.port),
            "KEYS": str(keys),
            "REDIRECT_URI": REDIRECT_URI,
        }
        self._process = await asyncio.create_subprocess_exec(
            self._node,
            str(SCRIPT),
            cwd=JS_DIR,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self._process.stdout is not None
        seen: list[bytes] = []
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                line = await self._process.stdout.readline()
                if not line:
                    raise AssertionError(f"oidc_provider.mjs exited: {b''.join(seen)!r}")
                seen.append(line)
                if line.startswith(b"listening "):
                    break
        # From here on its output is not read: drain it so that the pipe never fills.
        asyncio.get_running_loop().create_task(self._process.stdout.read())

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            await process.wait()

    async def rotate(self) -> dict[str, Any]:
        """A new signing key, first (so it signs); the old one stays published."""
        new = private_jwk()
        self.keys = [new, *self.keys]
        await self.stop()
        await self.start()
        return new

    async def backend_token(self) -> str:
        """An RFC 9068 JWT access token by client_credentials: the subject token to exchange."""
        async with async_http_client() as http:
            answer = await http.post(
                f"{self.issuer}/token",
                data={"grant_type": "client_credentials", "resource": AUDIENCE},
                auth=BACKEND,
            )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    async def authorization_code(self, email: str, *, nonce: str) -> tuple[str, str]:
        """(code, PKCE verifier) from a real authorization code flow, driven by following the
        provider's redirects (its interaction logs `email` in without a form)."""
        verifier = secrets.token_urlsafe(32)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        query = {
            "client_id": SHOP_WEB[0],
            "response_type": "code",
            "scope": "openid email",
            "redirect_uri": REDIRECT_URI,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
            "nonce": nonce,
            "state": secrets.token_urlsafe(8),
            "login_hint": email,
        }
        url = f"{self.issuer}/auth?{urlencode(query)}"
        async with async_http_client() as http:
            for _ in range(10):
                answer = await http.get(url)
                assert answer.is_redirect, (answer.status_code, answer.text[:500])
                url = urljoin(url, answer.headers["location"])
                if url.startswith(REDIRECT_URI):
                    found = parse_qs(urlsplit(url).query)
                    assert "code" in found, found
                    return found["code"][0], verifier
        raise AssertionError("the authorization flow did not reach the redirect URI")


@contextlib.asynccontextmanager
async def node_idp(directory: Path) -> AsyncIterator[NodeIdp]:
    idp = NodeIdp(need_node("oidc-provider"), directory)
    await idp.start()
    try:
        yield idp
    finally:
        await idp.stop()
