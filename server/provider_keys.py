"""The signing keys of the tenants' identity providers: each provider's JWKS, fetched through
server/outbound_http.py and cached in this process.

- A fetched JWKS is used for TOKENSERVICE_IDP_JWKS_CACHE_SECONDS, then fetched again on the
  next token of that provider.
- A provider rotates its keys: a token whose kid the cached set lacks makes the JWKS be
  fetched again at once, but at most once per TOKENSERVICE_IDP_JWKS_REFETCH_MIN_SECONDS per
  provider, so that tokens with invented kids cost the forger, not the provider; a kid still
  unknown after that is refused until the interval has passed.
- Concurrent misses of one provider share one fetch, and a fetch that failed is not tried
  again within that interval either (the answer meanwhile is the same 503): a provider that
  is down costs no request, and no timeout, per caller.
- Only public signing keys with a kid are kept: a member with private parameters, another
  `use` than sig, or one PyJWT cannot read is left out (and the others still count).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from typing import Any

import jwt

from server.clock import Clock
from server.errors import IdentityProviderUnavailable
from server.outbound_http import OutboundHttp
from server.records import IdentityProviderRecord
from server.settings import Settings

log = logging.getLogger(__name__)

# Private members of RFC 7518 keys: a JWKS that carries them is not a public key set.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})
# Providers whose key sets one process holds; the oldest fetched leaves first.
MAX_PROVIDERS = 10_000
MAX_KEYS = 100


@dataclasses.dataclass(frozen=True, slots=True)
class _KeySet:
    keys: dict[str, jwt.PyJWK]
    fetched_at: float


class ProviderKeys:
    def __init__(self, settings: Settings, http: OutboundHttp, clock: Clock) -> None:
        self._http = http
        self._clock = clock
        self._max_age = settings.idp_jwks_cache_seconds
        self._refetch_after = settings.idp_jwks_refetch_min_seconds
        self._sets: collections.OrderedDict[tuple[str, str, str], _KeySet] = (
            collections.OrderedDict()
        )
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._failed: dict[tuple[str, str, str], float] = {}  # when a fetch last failed
        self.fetches = 0  # how many JWKS requests this process made (tests, metrics)

    async def key(self, provider: IdentityProviderRecord, kid: str) -> jwt.PyJWK | None:
        """The provider's key `kid`, fetching its JWKS when the cached one is old or lacks the
        kid (rate-limited); None when the provider publishes no such key."""
        name = (provider.tenant, provider.name, provider.jwks_uri)
        cached = self._fresh(name)
        if cached is not None and kid in cached.keys:
            return cached.keys[kid]
        if cached is not None and self._clock.now() - cached.fetched_at < self._refetch_after:
            return None
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            again = self._fresh(name)  # another caller may have fetched meanwhile
            if again is not None and again is not cached:
                return again.keys.get(kid)
            failed = self._failed.get(name)
            if failed is not None and self._clock.now() - failed < self._refetch_after:
                raise IdentityProviderUnavailable(
                    "the identity provider's JWKS could not be fetched just now; retry later"
                )
            try:
                fetched = await self._fetch(provider)
            except IdentityProviderUnavailable:
                self._failed[name] = self._clock.now()
                raise
            self._failed.pop(name, None)
            self._remember(name, fetched)
        return fetched.keys.get(kid)

    def forget(self, provider: IdentityProviderRecord) -> None:
        """Drops a provider's cached keys (its configuration changed)."""
        name = (provider.tenant, provider.name, provider.jwks_uri)
        self._sets.pop(name, None)
        self._failed.pop(name, None)

    def _fresh(self, name: tuple[str, str, str]) -> _KeySet | None:
        cached = self._sets.get(name)
        if cached is None or self._clock.now() - cached.fetched_at >= self._max_age:
            return None
        return cached

    def _remember(self, name: tuple[str, str, str], keys: _KeySet) -> None:
        self._sets.pop(name, None)
        self._sets[name] = keys
        while len(self._sets) > MAX_PROVIDERS:
            old, _ = self._sets.popitem(last=False)
            self._locks.pop(old, None)
            self._failed.pop(old, None)

    async def _fetch(self, provider: IdentityProviderRecord) -> _KeySet:
        self.fetches += 1
        status, body = await self._http.get_json(provider, provider.jwks_uri)
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("keys"), list):
            log.warning(
                "identity provider %r of tenant %s: its JWKS URI answered %d without a key set",
                provider.name,
                provider.tenant,
                status,
            )
            raise IdentityProviderUnavailable("the identity provider's JWKS is not a key set")
        keys = public_signing_keys(body["keys"][:MAX_KEYS])
        return _KeySet(keys, self._clock.now())


def public_signing_keys(members: list[Any]) -> dict[str, jwt.PyJWK]:
    keys: dict[str, jwt.PyJWK] = {}
    for member in members:
        if not isinstance(member, dict) or not isinstance(member.get("kid"), str):
            continue
        if PRIVATE_MEMBERS.intersection(member) or member.get("use", "sig") != "sig":
            continue
        try:
            keys[member["kid"]] = jwt.PyJWK(member)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            continue
    return keys
