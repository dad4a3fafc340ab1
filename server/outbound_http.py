"""The one HTTP client the service uses to reach the outside: a tenant's identity provider's
JWKS URI and token endpoint (server/provider_keys.py, server/grants/social_login.py).

What a caller can provoke through it is bounded:
- Only the URLs an administrator configured for the provider are requested: every call names
  the provider record and the URL must be one of its configured URLs, exactly. Nothing a
  caller sends (a token's `iss`, `jku` or `x5u`, a redirect_uri) is ever fetched.
- Redirects are not followed (an answer 3xx is a failure), so a provider cannot send the
  service elsewhere either.
- Each request has a timeout (TOKENSERVICE_IDP_HTTP_TIMEOUT_SECONDS) and the answer is read
  in chunks up to TOKENSERVICE_IDP_MAX_RESPONSE_BYTES, then abandoned.
- Failures are IdentityProviderUnavailable (503, retry) saying what went wrong, never the
  provider's body, which may echo what was sent.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from server.errors import IdentityProviderUnavailable
from server.records import IdentityProviderRecord
from server.settings import Settings

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)


class OutboundHttp:
    """httpx with the limits above; one per process (its connection pool is shared)."""

    def __init__(
        self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._settings = settings
        self._transport = transport
        self._max_bytes = settings.idp_max_response_bytes
        self._client: httpx.AsyncClient | None = None  # made on first use: most cores never do

    def _http(self) -> httpx.AsyncClient:
        # httpx is imported with the first call out: a process that never makes one (most
        # never do, and no CLI command does) does not spend a fifth of a second loading it.
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._settings.idp_http_timeout_seconds),
                follow_redirects=False,
                trust_env=False,  # no proxy or .netrc from the environment
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                transport=self._transport,
                # identity: the size limit counts what is parsed, not a compressed bomb.
                headers={
                    "User-Agent": "tokenservice",
                    "Accept": "application/json",
                    "Accept-Encoding": "identity",
                },
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def get_json(self, provider: IdentityProviderRecord, url: str) -> tuple[int, Any]:
        """(status, parsed JSON) of a GET of one of `provider`'s configured URLs."""
        return await self._request(provider, "GET", url)

    async def post_form(
        self,
        provider: IdentityProviderRecord,
        url: str,
        form: Mapping[str, str],
        auth: tuple[str, str] | None = None,
    ) -> tuple[int, Any]:
        """(status, parsed JSON) of a form POST to one of `provider`'s configured URLs."""
        return await self._request(provider, "POST", url, form=form, auth=auth)

    async def get_discovery(self, provider: IdentityProviderRecord, url: str) -> tuple[int, Any]:
        """(status, parsed JSON) of an OpenID discovery document: only for an administrator
        configuring `provider` (server/identity_provider_admin.py), never for a caller."""
        return await self._request(provider, "GET", url, extra_allowed=url)

    async def _request(
        self,
        provider: IdentityProviderRecord,
        method: str,
        url: str,
        *,
        form: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        extra_allowed: str = "",
    ) -> tuple[int, Any]:
        if not url or (url not in configured_urls(provider) and url != extra_allowed):
            # A programming error, not a caller's: refuse rather than fetch.
            raise IdentityProviderUnavailable("the URL is not one configured for the provider")
        client = self._http()
        import httpx  # loaded by _http

        try:
            headers = {"Authorization": _basic(auth)} if auth is not None else None
            request = client.build_request(method, url, data=form, headers=headers)
            response = await client.send(request, stream=True)
            try:
                body = await self._bounded_body(response)
            finally:
                await response.aclose()
        except _TooLarge:
            raise _unavailable(
                provider, f"answered with more than {self._max_bytes} bytes"
            ) from None
        except httpx.TimeoutException:
            raise _unavailable(provider, "did not answer in time") from None
        except httpx.HTTPError:
            raise _unavailable(provider, "cannot be reached") from None
        if 300 <= response.status_code < 400:
            raise _unavailable(provider, "answered with a redirect, which is not followed")
        if response.status_code >= 500:
            raise _unavailable(provider, f"answered with status {response.status_code}")
        try:
            return response.status_code, json.loads(body)
        except ValueError:
            raise _unavailable(provider, "answered with something that is not JSON") from None

    async def _bounded_body(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > self._max_bytes:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)


class _TooLarge(Exception):
    """The answer is larger than the limit (caught before httpx's own errors)."""


def configured_urls(provider: IdentityProviderRecord) -> frozenset[str]:
    return frozenset(u for u in (provider.jwks_uri, provider.token_endpoint) if u)


def _basic(auth: tuple[str, str]) -> str:
    """RFC 6749 section 2.3.1: both parts form-urlencoded before Basic encoding."""
    pair = f"{quote_plus(auth[0])}:{quote_plus(auth[1])}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _unavailable(provider: IdentityProviderRecord, what: str) -> IdentityProviderUnavailable:
    log.warning("identity provider %r of tenant %s %s", provider.name, provider.tenant, what)
    return IdentityProviderUnavailable(f"the identity provider {what}")
