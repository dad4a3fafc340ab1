"""The domain's plain, immutable types: the records that cross the store boundary, and what
the grants and handlers return (IssuedTokens, Introspection, Revocation), independent of any
transport.

Timestamps are whole seconds since the epoch (UTC). Token records carry only the keyed digest of
the token, never the token itself.
"""

from __future__ import annotations

import dataclasses
import enum


class TokenKind(enum.StrEnum):
    ANONYMOUS = "anonymous"
    CUSTOMER = "customer"
    SERVICE = "service"


class TokenUse(enum.StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"
    # The customer's SaaS token: a JWT, never stored; introspection reports it with this use.
    SAAS = "saas"


class ClientKind(enum.StrEnum):
    STOREFRONT = "storefront"
    SERVICE = "service"


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"  # signs new SaaS tokens (exactly one at a time)
    VERIFYING = "verifying"  # superseded: published in the JWKS until retired
    RETIRED = "retired"  # neither signs nor verifies


class RefreshOutcome(enum.Enum):
    ROTATED = "rotated"  # this call won the rotation: the presented token is now rotated
    GRACE = "grace"  # rotated within the grace window: nothing changed; the first answer again
    KEPT = "kept"  # rotation disabled for the client: the presented token stays current
    REUSED = "reused"  # rotated before the grace window: the whole session was revoked
    INVALID = "invalid"  # unknown, expired or revoked token, or revoked session: nothing changed


@dataclasses.dataclass(frozen=True, slots=True)
class TenantRecord:
    name: str
    created_at: int
    # The browser origins (server/origins.py form) whose pages may call this tenant's storefront
    # endpoints (CORS, http_bridge/cors.py). Not secret: every browser is told them.
    allowed_origins: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class ClientRecord:
    client_id: str
    tenant: str
    kind: ClientKind
    name: str
    scopes: tuple[str, ...]
    # Keyed digest of the client secret; None for public (storefront) clients.
    secret_digest: str | None
    created_at: int
    access_token_ttl: int | None = None
    refresh_token_ttl: int | None = None
    refresh_rotation_disabled: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class CustomerRecord:
    id: str
    tenant: str
    email: str  # stored lower-cased; unique per tenant
    password_hash: str  # argon2id PHC string
    scopes: tuple[str, ...]
    legal_entity_ids: tuple[str, ...]
    created_at: int
    # False while a double opt-in sign-up waits for its link (server/accounts/signup.py): such
    # an account cannot log in.
    active: bool = True


class LinkPurpose(enum.StrEnum):
    """What a mailed one-time token (an AccountLink) does when it comes back."""

    OPT_IN = "opt_in"  # activates a double opt-in sign-up
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a purpose, not a secret
    EMAIL_CHANGE = "email_change"  # moves the login to `new_email`


@dataclasses.dataclass(frozen=True, slots=True)
class AccountLink:
    """A mailed one-time token, stored only as its keyed digest (server/tokens.py), single
    use and short-lived (TokenStore.save_account_link and the methods that consume one)."""

    digest: str
    purpose: LinkPurpose
    tenant: str
    customer_id: str
    created_at: int
    expires_at: int
    new_email: str | None = None  # EMAIL_CHANGE only, lower-cased


@dataclasses.dataclass(frozen=True, slots=True)
class AccountPolicy:
    """A tenant's account rules (server/accounts/policy.py); a tenant without a stored policy
    has `AccountPolicy(tenant)`."""

    tenant: str
    double_opt_in: bool = False
    password_min_length: int = 8
    reject_common_passwords: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class IdentityProviderRecord:
    """An external OpenID provider a tenant trusts (docs/identity-providers.md): its tokens
    become customer tokens (token exchange, social login). `name` is the reference's `config`
    (the default is "default"). The client secret is stored as given, since it must be sent to
    the provider's token endpoint; it is never shown back (admin answers `has_client_secret`)."""

    tenant: str
    name: str
    issuer: str
    jwks_uri: str
    audience: str
    created_at: int
    # The claim whose value is the customer's e-mail address (email, or sub where the
    # provider's subjects are e-mail addresses).
    customer_claim: str = "email"
    create_customers: bool = False
    customer_scopes: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    # Social login (OpenID Connect authorization code); empty when not configured.
    client_id: str = ""
    client_secret: str = ""
    token_endpoint: str = ""

    def __repr__(self) -> str:  # never show the secret, not even in a traceback
        return f"IdentityProviderRecord(tenant={self.tenant!r}, name={self.name!r})"


@dataclasses.dataclass(frozen=True, slots=True)
class SessionContext:
    """The optional storefront context; None leaves a field unchanged on update."""

    currency: str | None = None
    site_code: str | None = None
    language: str | None = None
    target_location: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SessionRecord:
    session_id: str
    tenant: str
    client_id: str
    created_at: int
    updated_at: int
    context: SessionContext = SessionContext()
    customer_id: str | None = None
    legal_entity_id: str | None = None
    revoked_at: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SessionUpdate:
    """What a refresh changes on its session; None leaves a field unchanged."""

    updated_at: int
    context: SessionContext = SessionContext()
    legal_entity_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CustomerSession:
    """One active session of a customer as a listing shows it (TokenStore.list_customer_sessions):
    what is safe to show its owner or an admin, no token and no digest. `expires_at` is when the
    last of its tokens runs out (its refresh token, unless refreshed again)."""

    session_id: str
    tenant: str
    client_id: str
    created_at: int
    updated_at: int  # the last login or refresh on it
    expires_at: int
    legal_entity_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class SessionCursor:
    """Where a page of a customer's sessions ended: listings run newest first, by creation time
    and then session id, and the next page starts after this one."""

    created_at: int
    session_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class TokenRecord:
    digest: str
    kind: TokenKind
    use: TokenUse
    tenant: str
    client_id: str
    scope: str
    issued_at: int
    expires_at: int
    session_id: str | None = None
    customer_id: str | None = None
    legal_entity_id: str | None = None
    revoked_at: int | None = None
    rotated_at: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TokenView:
    """A token with what introspection reports beside it (the customer's email)."""

    token: TokenRecord
    email: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SigningKeyRecord:
    kid: str
    algorithm: str
    # The private key as PKCS#8 DER, encrypted with AES-GCM under a key derived from the server
    # secret (nonce prepended), so that a copy of the database cannot sign tokens.
    private_key_encrypted: bytes
    public_jwk: str  # JSON text
    status: KeyStatus
    created_at: int
    retired_at: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PurgeReport:
    """What one cleanup of expired rows removed (TokenStore.purge_expired)."""

    tokens_removed: int = 0
    sessions_removed: int = 0

    def __add__(self, other: PurgeReport) -> PurgeReport:
        return PurgeReport(
            self.tokens_removed + other.tokens_removed,
            self.sessions_removed + other.sessions_removed,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RevocationEvent:
    """One committed revocation as the revocation feed tells resource servers of it: the
    fingerprints (server/tokens.py `fingerprint`) of tokens revoked alone, the sessions ended
    (every token of each, SaaS tokens included), or `everything` of the tenant. `position`
    orders the events of every tenant: a later event has a larger one."""

    position: int
    tenant: str
    revoked_at: int
    fingerprints: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    everything: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class FeedBounds:
    """Where the revocation feed stands: events after `pruned_through` are all kept, and `head`
    is the position of the latest (`pruned_through` when there is none)."""

    pruned_through: int
    head: int


@dataclasses.dataclass(frozen=True, slots=True)
class LoginFailures:
    """Failed customer logins of one account (TokenStore.record_login_failure): how many since
    the counter last started, when the last one was, and until when the account is locked (0:
    not locked). Keyed by tenant and a keyed digest of the email, never by anything derived
    from a password."""

    failures: int
    last_failure_at: int
    locked_until: int = 0


# --- what the grants and handlers return -------------------------------------------------------
TOKEN_TYPE = "Bearer"  # noqa: S105 - the OAuth token_type, not a secret


@dataclasses.dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What a caller presents to authenticate as a client; the secret is empty for a public
    storefront client."""

    client_id: str
    client_secret: str = ""

    def __repr__(self) -> str:  # never show the secret, not even in a traceback
        return f"ClientCredentials(client_id={self.client_id!r})"


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedTokens:
    kind: TokenKind
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str = ""
    refresh_token_expires_in: int = 0
    session_id: str = ""
    saas_token: str = ""
    session_idle_time: int = 0
    token_type: str = TOKEN_TYPE
    # Social login: the provider's own tokens, answered as the reference shows.
    external_access_token: str = ""
    external_id_token: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Introspection:
    active: bool
    kind: TokenKind | None = None
    use: TokenUse | None = None
    tenant: str = ""
    client_id: str = ""
    scope: str = ""
    expires_in: int = 0
    exp: int = 0
    iat: int = 0
    session_id: str = ""
    customer_id: str = ""
    email: str = ""
    legal_entity_id: str = ""
    token_type: str = TOKEN_TYPE
    # How long the caller may keep this answer (active answers only; docs/resource-servers.md).
    cache_seconds: int = 0


INACTIVE = Introspection(active=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Revocation:
    revoked_count: int

    @property
    def revoked(self) -> bool:
        return self.revoked_count > 0
