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

The header and claim checks are server/jwt_checks.py's, which the external identity providers'
tokens pass too; this module adds what is particular to a SaaS token (ES256 only, its claims).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jwt

from server.jwt_checks import JwtPolicy, JwtRejected, header_of, looks_like_jwt, verify_signed
from server.validation import TENANT_PATTERN

ALGORITHM = "ES256"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "tenant", "sid", "iat", "exp", "jti")
ALLOWED_HEADER = frozenset({"alg", "kid", "typ"})
# A SaaS token is about 500 characters; the bound keeps a hostile one from costing much.
MAX_SAAS_TOKEN = 4096

# A SaaS token is a JwtRejected as any other JWT; the name stays for its callers.
SaasTokenRejected = JwtRejected

__all__ = ["SaasClaims", "SaasTokenRejected", "looks_like_jwt", "verify"]


@dataclasses.dataclass(frozen=True, slots=True)
class SaasClaims:
    kid: str
    customer_id: str  # sub
    tenant: str
    session_id: str  # sid
    issued_at: int
    expires_at: int
    jti: str


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
    policy = JwtPolicy(
        algorithms=(ALGORITHM,),
        issuer=issuer,
        audience=audience,
        required=REQUIRED_CLAIMS,
        max_length=MAX_SAAS_TOKEN,
        allowed_header=ALLOWED_HEADER,
        leeway=leeway,
    )
    header = header_of(token, policy)
    key = keys.get(header["kid"])
    if key is None:
        raise SaasTokenRejected("the kid names no published key")
    claims = verify_signed(token, header, key, policy, now)
    for name in ("sub", "tenant", "sid", "jti"):
        if not isinstance(claims[name], str) or not claims[name]:
            raise SaasTokenRejected(f"the {name} claim must be a non-empty string")
    if not TENANT_PATTERN.fullmatch(claims["tenant"]):
        raise SaasTokenRejected("the tenant claim is not a tenant name")
    return SaasClaims(
        kid=header["kid"],
        customer_id=claims["sub"],
        tenant=claims["tenant"],
        session_id=claims["sid"],
        issued_at=claims["iat"],
        expires_at=claims["exp"],
        jti=claims["jti"],
    )
