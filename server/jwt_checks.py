"""The checks every JWT this service accepts must pass, whoever signed it (RFC 8725 section 3):
the service's own SaaS tokens (server/saas_verifier.py) and the tokens of the external
identity providers a tenant trusts (server/identity_providers.py). One implementation, so that
a check added for one is a check for both.

- The header, parsed here before PyJWT sees it: `alg` in the caller's explicit list (never
  `none`, never HS256 keyed with a public key, since the list has only asymmetric algorithms);
  no `crit` (RFC 7515 section 4.1.11: a critical extension the recipient does not understand
  must be refused, and this service understands none; PyJWT itself accepts `b64`); no member
  outside the caller's allowed set (in particular no `jku`, `jwk`, `x5u`, `x5c`: keys come
  only from the caller's key set, never from the token); `typ`, when present, one of the
  allowed values.
- The key: looked up by `kid` through the caller's function (which may refetch a provider's
  JWKS); an unknown kid is refused.
- The claims: every required claim present; `iss` compared as a whole string; `aud` a whole
  string equal to the audience (or, where the policy allows, a list holding it exactly);
  `exp`, `iat`, `nbf` whole numbers checked against the caller's clock with its leeway.
- Errors say which check failed, never the token or a claim value.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

import jwt

# Asymmetric JWS algorithms only: an HMAC algorithm keyed with a published key is a forgery.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class JwtRejected(Exception):
    """Why a JWT did not verify; the message never contains the token or a claim's value."""


@dataclasses.dataclass(frozen=True, slots=True)
class JwtPolicy:
    """What a JWT must be to be accepted. `issuer_name` and `audience_name` are how refusals
    name the expected issuer and audience ("this service", "the provider's")."""

    algorithms: tuple[str, ...]
    issuer: str
    audience: str
    required: tuple[str, ...]
    max_length: int
    allowed_header: frozenset[str] = frozenset({"alg", "kid", "typ"})
    allowed_typ: frozenset[str] = frozenset({"JWT"})
    audience_list_allowed: bool = False
    leeway: int = 0
    issuer_name: str = "this service"
    audience_name: str = "this service's"


_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.InvalidSignatureError, "the signature does not verify"),
    (jwt.InvalidAlgorithmError, "the algorithm is not allowed"),
    (jwt.DecodeError, "the token is malformed"),
)


def looks_like_jwt(token: str) -> bool:
    """A JWS compact serialisation has two dots; the opaque tokens (URL-safe base64) have none."""
    return token.count(".") == 2


def header_of(token: str, policy: JwtPolicy) -> dict[str, Any]:
    """The protected header, once every header check has passed (the `kid` is then a string)."""
    if len(token) > policy.max_length or not looks_like_jwt(token):
        raise JwtRejected("the token is not a JWS compact serialisation")
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        raise JwtRejected("the token is malformed") from None
    if not isinstance(header, dict):
        raise JwtRejected("the token is malformed")
    alg = header.get("alg")
    if alg not in policy.algorithms or alg not in ASYMMETRIC_ALGORITHMS:
        raise JwtRejected("the algorithm is not allowed")
    if "crit" in header:
        raise JwtRejected("the token has a critical header extension this service lacks")
    if not policy.allowed_header.issuperset(header):
        raise JwtRejected("the token has a header member this service never accepts")
    if "typ" in header and header["typ"] not in policy.allowed_typ:
        raise JwtRejected("the token's typ is not one this service accepts")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise JwtRejected("the kid names no published key")
    return header


def verify_signed(
    token: str, header: dict[str, Any], key: jwt.PyJWK, policy: JwtPolicy, now: int
) -> dict[str, Any]:
    """The claims of `token`, whose header `header_of` checked, signed with `key`."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=[header["alg"]],
            # Everything but the signature is checked below, against the caller's clock.
            options={
                "require": list(policy.required),
                "verify_signature": True,
                "verify_aud": False,
                "verify_iss": False,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.MissingRequiredClaimError as error:
        raise JwtRejected(f"the {error.claim} claim is missing") from None
    except jwt.InvalidTokenError as error:
        raise JwtRejected(_reason(error)) from None
    _check_claims(claims, policy, now)
    return claims


async def verify(
    token: str,
    policy: JwtPolicy,
    key_for: Callable[[str], Awaitable[jwt.PyJWK | None]],
    now: int,
) -> tuple[str, dict[str, Any]]:
    """(kid, claims) of a valid token; `key_for(kid)` finds the key or None."""
    header = header_of(token, policy)
    key = await key_for(header["kid"])
    if key is None:
        raise JwtRejected("the kid names no published key")
    return header["kid"], verify_signed(token, header, key, policy, now)


def _check_claims(claims: dict[str, Any], policy: JwtPolicy, now: int) -> None:
    # Exact comparisons here do not depend on PyJWT's version (2.10.0 matched the issuer as a
    # substring, CVE-2024-53861).
    if not isinstance(claims.get("iss"), str) or claims["iss"] != policy.issuer:
        raise JwtRejected(f"the issuer is not {policy.issuer_name}")
    if not _audience_matches(claims.get("aud"), policy):
        raise JwtRejected(f"the audience is not {policy.audience_name}")
    leeway = policy.leeway
    exp, iat = claims.get("exp"), claims.get("iat")
    if not whole_number(exp) or (iat is not None and not whole_number(iat)):
        raise JwtRejected("exp and iat must be whole numbers")
    assert isinstance(exp, int)
    if now >= exp + leeway:
        raise JwtRejected("the token has expired")
    if isinstance(iat, int) and iat > now + leeway:
        raise JwtRejected("the token was issued in the future")
    nbf = claims.get("nbf")
    if nbf is not None and (not whole_number(nbf) or nbf > now + leeway):
        raise JwtRejected("the token is not valid yet")


def _audience_matches(aud: object, policy: JwtPolicy) -> bool:
    if isinstance(aud, str):
        return aud == policy.audience
    if policy.audience_list_allowed and isinstance(aud, list) and aud:
        return all(isinstance(a, str) for a in aud) and policy.audience in aud
    return False


def whole_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reason(error: Exception) -> str:
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    return "the token does not verify"
