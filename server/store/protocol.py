"""The store's interface, as small roles composed into `TokenStore` (as fosite's storage.go
composes its storages): each consumer asks for the role it uses.

Each method is one unit of work: it either happens whole or not at all, even under concurrency.
Implementations: `sql.SqlStore` (SQLite, PostgreSQL) and `memory.MemoryStore` (unit tests), and
`cached.CachedStore` in front of either. Failures to reach the store raise
`errors.StoreUnavailable`; duplicates raise `errors.AlreadyExists`; a record that needs a missing
parent (a client of an unknown tenant) raises `errors.NotFound`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from server.records import (
    AccountLink,
    AccountPolicy,
    ClientRecord,
    CustomerRecord,
    CustomerSession,
    FeedBounds,
    IdentityProviderRecord,
    LoginFailures,
    PurgeReport,
    RefreshOutcome,
    RevocationEvent,
    SessionCursor,
    SessionRecord,
    SessionUpdate,
    SigningKeyRecord,
    TenantRecord,
    TokenRecord,
    TokenView,
)


class Health(Protocol):
    """Readiness and shutdown (the health service)."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Returns when the store answers a trivial query; raises StoreUnavailable otherwise
        (readiness checks). After a write failed with StoreUnavailable, a store that can tell
        (SqlStore) answers only once a real write succeeds again."""
        ...


class Tenants(Protocol):
    """Tenants and their allowed origins. A create is one insert (AlreadyExists for a taken
    name); reads are plain reads."""

    async def create_tenant(self, tenant: TenantRecord) -> None: ...

    async def get_tenant(self, name: str) -> TenantRecord | None: ...

    async def list_tenants(self) -> list[TenantRecord]: ...

    async def set_allowed_origins(self, name: str, origins: Sequence[str]) -> TenantRecord | None:
        """Replaces the tenant's allowed origins by `origins` (one UPDATE); returns the tenant
        as it is now, or None, changing nothing, when there is no such tenant."""
        ...


class Clients(Protocol):
    """OAuth clients of a tenant. A create is one insert: AlreadyExists for a taken id, NotFound
    for an unknown tenant. A client never changes once created (cached.py relies on it)."""

    async def create_client(self, client: ClientRecord) -> None: ...

    async def get_client(self, client_id: str) -> ClientRecord | None: ...

    async def list_clients(self, tenant: str) -> list[ClientRecord]: ...


class CustomerPasswordHashes(Protocol):
    """The role server/passwords.py needs: what the stored hashes look like, and rehashing."""

    async def password_hash_sample(self, tenant: str, limit: int) -> list[str]:
        """Up to `limit` password hashes of the tenant's customers, the first by email (one
        range of the (tenant, email) index; which customers is arbitrary, but unrelated to who
        logs in); empty for a tenant without customers. A plain read."""
        ...

    async def replace_password_hash(self, customer_id: str, expected: str, new: str) -> bool:
        """Sets the customer's password hash to `new` if it is still `expected`, atomically
        (one conditional UPDATE): a hash changed meanwhile, on any replica, is never
        overwritten. True when replaced; False, changing nothing, when the customer is gone or
        has another hash."""
        ...


class Customers(CustomerPasswordHashes, Protocol):
    """Customer accounts (customer login and provisioning), with their password hashes. A create
    is one insert: AlreadyExists for an email taken in the tenant, NotFound for an unknown
    tenant."""

    async def create_customer(self, customer: CustomerRecord) -> None: ...

    async def find_customer(self, tenant: str, email: str) -> CustomerRecord | None:
        """By tenant and lower-cased email."""
        ...

    async def get_customer(self, customer_id: str) -> CustomerRecord | None: ...


class IdentityProviders(Protocol):
    """The external OpenID providers a tenant trusts (server/identity_providers.py), by tenant
    and name. Each method is one transaction; reads are plain reads."""

    async def put_identity_provider(self, provider: IdentityProviderRecord) -> None:
        """Stores `provider`, replacing the tenant's provider of that name if there is one,
        in one transaction; NotFound, changing nothing, for an unknown tenant."""
        ...

    async def get_identity_provider(
        self, tenant: str, name: str
    ) -> IdentityProviderRecord | None: ...

    async def list_identity_providers(self, tenant: str) -> list[IdentityProviderRecord]:
        """The tenant's providers, by name."""
        ...

    async def delete_identity_provider(self, tenant: str, name: str) -> bool:
        """Deletes one provider (one DELETE); False when there was none."""


class Accounts(Protocol):
    """What customers do to their own accounts (server/accounts/): the tenant's account
    policy, and the mailed one-time tokens (AccountLink, digests only) whose use changes the
    account. Consuming a link is single use: the DELETE of its row decides the one caller that
    gets it, on any replica; a link of another tenant, of another purpose, expired, or whose
    customer does not exist (password_reset.NO_CUSTOMER) is not found. Each consuming method
    is one transaction: on a refusal (None, or an error) nothing changed, the link included."""

    async def get_account_policy(self, tenant: str) -> AccountPolicy | None:
        """The tenant's stored policy; None when it has none (defaults apply). A plain read."""
        ...

    async def set_account_policy(self, policy: AccountPolicy) -> None:
        """Replaces the tenant's policy, in one transaction; NotFound for an unknown tenant."""
        ...

    async def save_account_link(self, link: AccountLink) -> None:
        """Stores `link`, deleting the customer's other links of the same purpose in the same
        transaction (a new mail supersedes the earlier ones)."""
        ...

    async def activate_customer(self, tenant: str, digest: str, now: int) -> CustomerRecord | None:
        """Consumes a live OPT_IN link and marks its customer active; returns the customer as
        it is now, or None when there is no such link."""
        ...

    async def reset_password(
        self, tenant: str, digest: str, new_hash: str, now: int
    ) -> list[str] | None:
        """Consumes a live PASSWORD_RESET link, sets its customer's password hash and revokes
        every session of the customer with all their tokens; returns the ended session ids, or
        None when there is no such link."""
        ...

    async def change_password(
        self, customer_id: str, expected_hash: str, new_hash: str, keep_session_id: str, now: int
    ) -> list[str] | None:
        """Sets the password hash to `new_hash` if it is still `expected_hash` (one conditional
        UPDATE: a concurrent change wins) and revokes every other session of the customer than
        `keep_session_id`; returns the ended session ids, or None, changing nothing, when the
        hash was changed meanwhile."""
        ...

    async def change_email(self, tenant: str, digest: str, now: int) -> CustomerRecord | None:
        """Consumes a live EMAIL_CHANGE link and moves its customer's email to the link's
        `new_email`; returns the customer as it is now, or None when there is no such link.
        AlreadyExists, changing nothing, when another customer of the tenant has that email."""
        ...

    async def purge_account_links(self, now: int) -> int:
        """Deletes the links that expired by `now` (the janitor); returns how many."""
        ...


class LoginFailureCounters(Protocol):
    """Failed-login counters per account (server/abuse.py), shared by every replica."""

    async def get_login_failures(self, tenant: str, subject: str) -> LoginFailures | None:
        """The failed-login counter of one account (`subject`: a keyed digest of the email)."""
        ...

    async def record_login_failure(
        self,
        tenant: str,
        subject: str,
        next_state: Callable[[LoginFailures | None], LoginFailures],
    ) -> LoginFailures:
        """Replaces the counter by `next_state(current)`, atomically: concurrent failures on
        any replica are all counted. Returns the new state."""
        ...

    async def clear_login_failures(self, tenant: str, subject: str) -> None:
        """Forgets the counter (a successful login)."""
        ...


class SigningKeys(Protocol):
    """The signing keys (signing.KeyRing, admin). Every write takes the keys' lock, so a rotation,
    a first key and a retirement on any replica happen one after the other."""

    async def rotate_signing_key(self, new_key: SigningKeyRecord) -> None:
        """Adds `new_key` as the active key; the previously active key becomes verifying."""
        ...

    async def add_first_signing_key(self, new_key: SigningKeyRecord) -> bool:
        """Adds `new_key` as the active key unless an active or verifying key exists, atomically
        (replicas starting together on a fresh database create one key); True if added."""
        ...

    async def list_signing_keys(self) -> list[SigningKeyRecord]:
        """All keys, newest first."""
        ...

    async def retire_signing_key(
        self,
        kid: str,
        now: int,
        *,
        check: Callable[[Sequence[SigningKeyRecord]], None],
    ) -> SigningKeyRecord | None:
        """Marks a verifying key retired; returns it, or None when no such key exists (a key
        retired already is returned as it is). The active key cannot be retired (rotate
        first): raises errors.InvalidRequest. Before retiring, `check(keys)` sees every key as
        this transaction holds them, locked against a concurrent rotation, and raises to refuse
        (admin.retire_signing_key: a key that still signs)."""
        ...


class ServiceMeta(Protocol):
    """Service metadata (server/startup.py): the server secret's canary, and whether the database
    holds anything made with a secret."""

    async def get_meta(self, name: str) -> str | None:
        """The value stored under `name`, or None."""
        ...

    async def add_meta_if_absent(self, name: str, value: str) -> str:
        """Stores `value` under `name` unless a value is there already, atomically (replicas
        starting together agree on one); returns the value stored."""
        ...

    async def holds_data(self) -> bool:
        """Whether anything made with a server secret was ever stored: service metadata (the
        secret's canary), a tenant, a signing key or a token."""
        ...


class Tokens(Protocol):
    """Tokens by digest: saved with the session they start, looked up, revoked one at a time."""

    async def save_tokens(
        self, tokens: Sequence[TokenRecord], new_session: SessionRecord | None = None
    ) -> None:
        """Inserts the tokens, and the new session they start if any, in one transaction."""
        ...

    async def find_token(self, digest: str) -> TokenView | None: ...

    async def revoke_token(self, digest: str, now: int, *, fingerprint: str = "") -> int:
        """Revokes one token; returns how many rows changed (0 or 1). When it changed one, the
        same transaction records a revocation-feed event naming `fingerprint` (when given) for
        the token's tenant."""
        ...


class Sessions(Protocol):
    """Sessions and the token exchanges that continue them (login, refresh, the deprecated
    anonymous refresh), each one transaction; and revoking a session whole."""

    async def get_session(self, session_id: str) -> SessionRecord | None: ...

    async def start_customer_session(
        self,
        session_id: str,
        customer_id: str,
        legal_entity_id: str | None,
        now: int,
        tokens: Sequence[TokenRecord],
        *,
        revoke_anonymous_refresh: bool = False,
    ) -> bool:
        """Customer login continuing an anonymous session, in one transaction: binds the session
        to the customer and saves `tokens`. The session's anonymous refresh tokens keep working
        (they yield anonymous tokens only, and the storefront SDK keeps using them); with
        `revoke_anonymous_refresh` (strict_customer_sessions) they are revoked. Returns False,
        changing nothing, when the session is revoked or belongs to another customer."""
        ...

    async def refresh(
        self,
        presented_digest: str,
        session_id: str,
        tokens: Sequence[TokenRecord],
        update: SessionUpdate,
        *,
        now: int,
        grace_seconds: int,
        rotate: bool,
    ) -> RefreshOutcome:
        """Exchanges a refresh token, atomically: saves `tokens` and applies `update` when the
        outcome is ROTATED or KEPT.

        With `rotate`, one conditional UPDATE marks the presented token rotated; its row count
        decides the single winner (ROTATED). A token rotated at most `grace_seconds` ago is a
        retry or a parallel tab (GRACE): it saves nothing and changes nothing, the session
        included; the caller answers with the successors the winning exchange saved (a rotating
        refresh derives them from the presented token, so `tokens` are those very records, and
        saving them again would break the digests' uniqueness). One rotated earlier revokes the
        whole session (REUSED). Without `rotate` the token stays current (KEPT). A revoked
        session, or a revoked or expired token, changes nothing (INVALID)."""
        ...

    async def continue_anonymous_session(
        self,
        access_digest: str,
        session_id: str,
        tokens: Sequence[TokenRecord],
        update: SessionUpdate,
        *,
        now: int,
        after_login: bool = True,
    ) -> bool:
        """The deprecated anonymous refresh by access token, in one transaction: when the access
        token is live, anonymous and of `session_id`, and the session is open (and, unless
        `after_login`, has no customer), updates the session and saves `tokens`. Returns False,
        changing nothing, otherwise."""
        ...

    async def revoke_session(self, session_id: str, now: int) -> int:
        """Revokes the session and every token of it; returns how many tokens changed."""
        ...


class CustomerSessions(Protocol):
    """A customer's sessions, listed and ended (server/customer_sessions.py: "log out
    everywhere", an admin ending a customer's or a legal entity's sessions, a password change
    ending every other session). A session is *active* while it is not revoked and one of its
    tokens is neither revoked nor expired at `now`. Every revoke is one transaction that
    revokes the sessions and every token of them, and returns the ids of the sessions it
    revoked, so that a cache in front (cached.py) drops their tokens before it returns. A
    refresh racing with it either committed first (its new tokens are revoked too) or finds
    the session revoked (RefreshOutcome.INVALID): no token of a revoked session stays live."""

    async def list_customer_sessions(
        self,
        customer_id: str,
        *,
        now: int,
        limit: int,
        after: SessionCursor | None = None,
    ) -> list[CustomerSession]:
        """Up to `limit` active sessions of the customer, newest first (created_at, then
        session_id, both descending), starting after `after`; a plain read (one range of
        ix_sessions_customer_id)."""
        ...

    async def revoke_customer_session(self, customer_id: str, session_id: str, *, now: int) -> bool:
        """Revokes session `session_id` and its tokens if it is an active session of the
        customer; True when it was, False, changing nothing, otherwise (unknown, another
        customer's, revoked or expired already)."""
        ...

    async def revoke_customer_sessions(
        self, customer_id: str, *, except_session_id: str | None = None, now: int
    ) -> list[str]:
        """Revokes every session of the customer not revoked yet, but `except_session_id`
        (the caller's own, on "log out everywhere else" or a password change), and every
        token of them; returns the ids of the sessions it revoked (empty: nothing changed)."""
        ...

    async def revoke_legal_entity_sessions(
        self, tenant: str, legal_entity_id: str, *, now: int
    ) -> list[str]:
        """Revokes every session of `tenant` not revoked yet whose current legal entity is
        `legal_entity_id`, and every token of them; returns the ids of the sessions it
        revoked."""
        ...


class Housekeeping(Protocol):
    """What the janitor (server/janitor.py) deletes: expired tokens and sessions, old login-failure
    counters."""

    async def purge_expired(self, now: int, *, batch_size: int) -> PurgeReport:
        """Deletes what no caller can use any more, and returns how much it deleted:
        - a token without a session (a service token) once `expires_at <= now`;
        - a dead session, every token of it, then its row. A session is dead when it is revoked
          or none of its tokens has `expires_at > now`.
        Every token of a live session stays: a rotated refresh token for reuse detection while
        it has not expired, an expired access token as the bearer of a customer refresh.

        Not one transaction: many short ones, each touching at most `batch_size` sessions or
        tokens (1 to MAX_PURGE_BATCH), until nothing is left; each holds the write lock
        (SQLite) or its row locks (PostgreSQL) only briefly, and rows other transactions hold
        are skipped until the next call. A session whose tokens have all expired is first
        closed (marked revoked at `now`, in a transaction that checks again that it is dead),
        so that nothing can revive it while its tokens are deleted. Safe to run beside the
        service and beside another purge; a call that fails part-way leaves only whole
        batches done, and the next call finishes the work."""
        ...

    async def purge_login_failures(self, before: int) -> int:
        """Deletes counters whose last failure was before `before` and whose lock has run out
        by then; returns how many."""
        ...


class RevocationFeedEvents(Protocol):
    """The revocation feed's events (server/revocation_feed.py). Every method of the other
    roles that revokes something a resource server may hold records one, in its own
    transaction, for the tenant of what it revoked: revoke_token (the fingerprint it is given),
    revoke_session, the refresh that finds reuse, revoke_customer_session,
    revoke_customer_sessions, revoke_legal_entity_sessions, reset_password and change_password
    (the sessions they ended), change_email (the customer's open sessions, whose cached answers
    carry the old address). Nothing is recorded when nothing changed. Positions increase in
    commit order and are never reused."""

    async def revocation_events(
        self, after: int, *, tenant: str | None = None, limit: int
    ) -> list[RevocationEvent]:
        """The events after position `after`, oldest first, at most `limit`; only `tenant`'s
        when given."""
        ...

    async def revocation_feed_bounds(self) -> FeedBounds:
        """The last position pruned and the latest position."""
        ...

    async def prune_revocation_events(self, before: int) -> int:
        """Deletes the events recorded before `before` (and any earlier position), remembering
        the last position it deleted; returns how many."""
        ...


class TokenStore(
    Health,
    Tenants,
    Clients,
    Customers,
    IdentityProviders,
    Accounts,
    LoginFailureCounters,
    SigningKeys,
    ServiceMeta,
    Tokens,
    Sessions,
    CustomerSessions,
    Housekeeping,
    RevocationFeedEvents,
    Protocol,
):
    """Every role: what the core (server/core.py) holds and the implementations provide."""
