"""Verifying a SaaS token (the customer's ES256 JWT) the way a relying party must.

The service signs SaaS tokens (server.signing) and also verifies them: introspection (RFC 7662)
answers for a SaaS token it issued. Every check is explicit here, not left to library defaults
(RFC 8725 section 3):

- The header: `alg` exactly ES256 (no `none`, no HS256 keyed with the public key: the algorithm
  list passed to PyJWT is ["ES256"] and nothing else); `kid` names a key the service publishes;
  `typ`, when present, is JWT; no `crit`, because the service understands no extension and
  RFC 7515 section 4.1.11 says a recipient that does not understand a critical extension must
  reject the token (PyJWT would accept the `b64` extension); and no other header member, since
  the service never sets one (in particular no `jku`, `jwk`, `x5u`, `x5c`: keys come only from
  the key ring).
- The key: looked up by kid among the published keys (active, including one rotated in but not
  yet signing, and verifying; a retired key verifies nothing). An unknown kid is rejected as it
  is: nothing is fetched or re-read for it, so forged kids cost the forger, not the store. The
  ring re-reads the store every `refresh_seconds`, long before a newly rotated key starts
  signing (TOKENSERVICE_SIGNING_KEY_ACTIVATION_SECONDS).
- The claims: all of iss, aud, sub, tenant, sid, iat, exp, jti present (the service always sets
  them); iss and aud compared as whole strings (not substring, prefix or list membership);
  exp and iat checked against the service's clock (a token is expired from `exp` on).
- Errors say which check failed, never the token or a claim value.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import jwt

from server.validation import TENANT_PATTERN

ALGORITHM = "ES256"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "tenant", "sid", "iat", "exp", "jti")
ALLOWED_HEADER = frozenset({"alg", "kid", "typ"})
# A SaaS token is about 500 characters; the bound keeps a hostile one from costing much.
MAX_SAAS_TOKEN = 4096

_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.InvalidSignatureError, "the signature does not verify"),
    (jwt.InvalidAlgorithmError, "the algorithm is not allowed"),
    (jwt.InvalidAudienceError, "the audience is not this service's"),
    (jwt.InvalidIssuerError, "the issuer is not this service"),
    (jwt.DecodeError, "the token is malformed"),
)


class SaasTokenRejected(Exception):
    """Why a SaaS token did not verify; the message never contains the token."""


@dataclasses.dataclass(frozen=True, slots=True)
class SaasClaims:
    kid: str
    customer_id: str  # sub
    tenant: str
    session_id: str  # sid
    issued_at: int
    expires_at: int
    jti: str


def looks_like_jwt(token: str) -> bool:
    """A JWS compact serialisation has two dots; the opaque tokens (URL-safe base64) have none."""
    return token.count(".") == 2


def verify(
    token: str,
    keys: Mapping[str, jwt.PyJWK],
    *,
    issuer: str,
    audience: str,
    now: int,
    leeway: int = 0,
) -> SaasClaims:
    """The claims of a valid SaaS token, or SaasTokenRejected saying which check failed."""
    if len(token) > MAX_SAAS_TOKEN or not looks_like_jwt(token):
        raise SaasTokenRejected("the token is not a JWS compact serialisation")
    key = _key_for(_header(token), keys)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            # Time is checked below against the service's clock, not the wall clock.
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_signature": True,
                "verify_aud": True,
                "verify_iss": True,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.MissingRequiredClaimError as error:
        raise SaasTokenRejected(f"the {error.claim} claim is missing") from None
    except jwt.InvalidTokenError as error:
        raise SaasTokenRejected(_reason(error)) from None
    return _checked(
        claims, _header(token)["kid"], issuer=issuer, audience=audience, now=now, leeway=leeway
    )


def _header(token: str) -> dict[str, Any]:
    """The protected header, parsed here: PyJWT's parser already judges `crit` on its own terms
    (accepting the extensions it implements), and this verifier must see it first."""
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        raise SaasTokenRejected("the token is malformed") from None
    if not isinstance(header, dict):
        raise SaasTokenRejected("the token is malformed")
    return header


def _key_for(header: dict[str, Any], keys: Mapping[str, jwt.PyJWK]) -> jwt.PyJWK:
    if header.get("alg") != ALGORITHM:
        raise SaasTokenRejected("the algorithm is not allowed")
    if "crit" in header:
        raise SaasTokenRejected("the token has a critical header extension this service lacks")
    if not ALLOWED_HEADER.issuperset(header):
        raise SaasTokenRejected("the token has a header member this service never sets")
    if header.get("typ", "JWT") != "JWT":
        raise SaasTokenRejected("the token's typ is not JWT")
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise SaasTokenRejected("the kid names no published key")
    return key


def _checked(
    claims: dict[str, Any], kid: str, *, issuer: str, audience: str, now: int, leeway: int
) -> SaasClaims:
    # PyJWT checked these too; exact comparisons here do not depend on its version (2.10.0
    # matched the issuer as a substring, CVE-2024-53861) and refuse a list-valued aud.
    if not isinstance(claims["iss"], str) or claims["iss"] != issuer:
        raise SaasTokenRejected("the issuer is not this service")
    if not isinstance(claims["aud"], str) or claims["aud"] != audience:
        raise SaasTokenRejected("the audience is not this service's")
    exp, iat = claims["exp"], claims["iat"]
    if not _whole_number(exp) or not _whole_number(iat):
        raise SaasTokenRejected("exp and iat must be whole numbers")
    if now >= exp + leeway:
        raise SaasTokenRejected("the token has expired")
    if iat > now + leeway:
        raise SaasTokenRejected("the token was issued in the future")
    nbf = claims.get("nbf")
    if nbf is not None and (not _whole_number(nbf) or nbf > now + leeway):
        raise SaasTokenRejected("the token is not valid yet")
    for name in ("sub", "tenant", "sid", "jti"):
        if not isinstance(claims[name], str) or not claims[name]:
            raise SaasTokenRejected(f"the {name} claim must be a non-empty string")
    if not TENANT_PATTERN.fullmatch(claims["tenant"]):
        raise SaasTokenRejected("the tenant claim is not a tenant name")
    return SaasClaims(
        kid=kid,
        customer_id=claims["sub"],
        tenant=claims["tenant"],
        session_id=claims["sid"],
        issued_at=iat,
        expires_at=exp,
        jti=claims["jti"],
    )


def _whole_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reason(error: Exception) -> str:
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    return "the token does not verify"
