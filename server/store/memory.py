"""MemoryStore: the TokenStore in dicts, for unit tests of the grants.

Same semantics and messages as SqlStore (the contract suite in tests/unit runs against both).
Every write holds one asyncio.Lock, and no method awaits half-way through a change, so each
call is as atomic as a SQL transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence

from server.errors import AlreadyExists, InvalidRequest, NotFound
from server.records import (
    AccountLink,
    AccountPolicy,
    ClientRecord,
    CustomerRecord,
    CustomerSession,
    FeedBounds,
    IdentityProviderRecord,
    KeyStatus,
    LinkPurpose,
    LoginFailures,
    PurgeReport,
    RefreshOutcome,
    RevocationEvent,
    SessionCursor,
    SessionRecord,
    SessionUpdate,
    SigningKeyRecord,
    TenantRecord,
    TokenKind,
    TokenRecord,
    TokenUse,
    TokenView,
)
from server.store.outcomes import (
    ACTIVE_KEY_RETIRE,
    IDENTIFIER_EXISTS,
    check_purge_batch,
    client_exists,
    customer_exists,
    key_exists,
    tenant_exists,
    tenant_missing,
)


class MemoryStore:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._tenants: dict[str, TenantRecord] = {}
        self._clients: dict[str, ClientRecord] = {}
        self._customers: dict[str, CustomerRecord] = {}
        self._sessions: dict[str, SessionRecord] = {}
        self._tokens: dict[str, TokenRecord] = {}
        self._keys: dict[str, SigningKeyRecord] = {}
        self._login_failures: dict[tuple[str, str], LoginFailures] = {}
        self._meta: dict[str, str] = {}
        self._providers: dict[tuple[str, str], IdentityProviderRecord] = {}
        self._account_policies: dict[str, AccountPolicy] = {}
        self._account_links: dict[str, AccountLink] = {}
        self._events: list[RevocationEvent] = []
        self._feed_bounds = FeedBounds(pruned_through=0, head=0)

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    # --- provisioning -----------------------------------------------------------------------
    async def create_tenant(self, tenant: TenantRecord) -> None:
        async with self._lock:
            if tenant.name in self._tenants:
                raise AlreadyExists(tenant_exists(tenant.name))
            self._tenants[tenant.name] = tenant

    async def get_tenant(self, name: str) -> TenantRecord | None:
        return self._tenants.get(name)

    async def list_tenants(self) -> list[TenantRecord]:
        return sorted(self._tenants.values(), key=lambda t: t.name)

    async def set_allowed_origins(self, name: str, origins: Sequence[str]) -> TenantRecord | None:
        async with self._lock:
            tenant = self._tenants.get(name)
            if tenant is None:
                return None
            tenant = dataclasses.replace(tenant, allowed_origins=tuple(origins))
            self._tenants[name] = tenant
            return tenant

    async def create_client(self, client: ClientRecord) -> None:
        async with self._lock:
            if client.client_id in self._clients:
                raise AlreadyExists(client_exists(client.client_id))
            self._require_tenant(client.tenant)
            self._clients[client.client_id] = client

    async def get_client(self, client_id: str) -> ClientRecord | None:
        return self._clients.get(client_id)

    async def list_clients(self, tenant: str) -> list[ClientRecord]:
        found = (c for c in self._clients.values() if c.tenant == tenant)
        return sorted(found, key=lambda c: c.client_id)

    async def create_customer(self, customer: CustomerRecord) -> None:
        customer = dataclasses.replace(customer, email=customer.email.lower())
        async with self._lock:
            taken = await self.find_customer(customer.tenant, customer.email)
            if taken is not None or customer.id in self._customers:
                raise AlreadyExists(customer_exists(customer.tenant))
            self._require_tenant(customer.tenant)
            self._customers[customer.id] = customer

    async def find_customer(self, tenant: str, email: str) -> CustomerRecord | None:
        email = email.lower()
        found = (c for c in self._customers.values() if (c.tenant, c.email) == (tenant, email))
        return next(found, None)

    async def get_customer(self, customer_id: str) -> CustomerRecord | None:
        return self._customers.get(customer_id)

    # --- customer password hashes -----------------------------------------------------------
    async def password_hash_sample(self, tenant: str, limit: int) -> list[str]:
        found = sorted((c for c in self._customers.values() if c.tenant == tenant), key=_email)
        return [c.password_hash for c in found[:limit]]

    async def replace_password_hash(self, customer_id: str, expected: str, new: str) -> bool:
        async with self._lock:
            customer = self._customers.get(customer_id)
            if customer is None or customer.password_hash != expected:
                return False
            self._customers[customer_id] = dataclasses.replace(customer, password_hash=new)
            return True

    def _require_tenant(self, tenant: str) -> None:
        if tenant not in self._tenants:
            raise NotFound(tenant_missing(tenant))

    # --- customer accounts (server/accounts/) --------------------------------------------------
    async def get_account_policy(self, tenant: str) -> AccountPolicy | None:
        return self._account_policies.get(tenant)

    async def set_account_policy(self, policy: AccountPolicy) -> None:
        async with self._lock:
            self._require_tenant(policy.tenant)
            self._account_policies[policy.tenant] = policy

    async def save_account_link(self, link: AccountLink) -> None:
        async with self._lock:
            if link.digest in self._account_links:
                raise AlreadyExists(IDENTIFIER_EXISTS)
            for digest, other in list(self._account_links.items()):
                if (other.customer_id, other.purpose) == (link.customer_id, link.purpose):
                    del self._account_links[digest]
            self._account_links[link.digest] = link

    async def activate_customer(self, tenant: str, digest: str, now: int) -> CustomerRecord | None:
        async with self._lock:
            link = self._live_link(tenant, digest, LinkPurpose.OPT_IN, now)
            customer = self._customers.get(link.customer_id) if link else None
            if link is None or customer is None:
                return None
            del self._account_links[digest]
            customer = dataclasses.replace(customer, active=True)
            self._customers[customer.id] = customer
            return customer

    async def reset_password(
        self, tenant: str, digest: str, new_hash: str, now: int
    ) -> list[str] | None:
        async with self._lock:
            link = self._live_link(tenant, digest, LinkPurpose.PASSWORD_RESET, now)
            customer = self._customers.get(link.customer_id) if link else None
            if link is None or customer is None:
                return None
            del self._account_links[digest]
            self._customers[customer.id] = dataclasses.replace(customer, password_hash=new_hash)
            return self._end_customer_sessions(customer.id, None, now)

    async def change_password(
        self, customer_id: str, expected_hash: str, new_hash: str, keep_session_id: str, now: int
    ) -> list[str] | None:
        async with self._lock:
            customer = self._customers.get(customer_id)
            if customer is None or customer.password_hash != expected_hash:
                return None
            self._customers[customer_id] = dataclasses.replace(customer, password_hash=new_hash)
            return self._end_customer_sessions(customer_id, keep_session_id, now)

    async def change_email(self, tenant: str, digest: str, now: int) -> CustomerRecord | None:
        async with self._lock:
            link = self._live_link(tenant, digest, LinkPurpose.EMAIL_CHANGE, now)
            customer = self._customers.get(link.customer_id) if link else None
            if link is None or customer is None or link.new_email is None:
                return None
            taken = await self.find_customer(customer.tenant, link.new_email)
            if taken is not None and taken.id != customer.id:
                raise AlreadyExists(customer_exists(tenant))
            del self._account_links[digest]
            customer = dataclasses.replace(customer, email=link.new_email)
            self._customers[customer.id] = customer
            sessions = [
                sid
                for sid, s in self._sessions.items()
                if s.customer_id == customer.id and s.revoked_at is None
            ]
            self._record(tenant, now, sessions=sessions)
            return customer

    async def purge_account_links(self, now: int) -> int:
        async with self._lock:
            doomed = [d for d, link in self._account_links.items() if link.expires_at <= now]
            for digest in doomed:
                del self._account_links[digest]
            return len(doomed)

    def _live_link(
        self, tenant: str, digest: str, purpose: LinkPurpose, now: int
    ) -> AccountLink | None:
        link = self._account_links.get(digest)
        if link is None or (link.tenant, link.purpose) != (tenant, purpose):
            return None
        return link if link.expires_at > now else None

    def _end_customer_sessions(self, customer_id: str, keep: str | None, now: int) -> list[str]:
        """revoke_customer_sessions, under the caller's lock."""
        return self._revoke_sessions(
            lambda s: s.customer_id == customer_id and s.session_id != keep, now
        )

    # --- login failures ---------------------------------------------------------------------
    async def put_identity_provider(self, provider: IdentityProviderRecord) -> None:
        async with self._lock:
            self._require_tenant(provider.tenant)
            self._providers[(provider.tenant, provider.name)] = provider

    async def get_identity_provider(self, tenant: str, name: str) -> IdentityProviderRecord | None:
        return self._providers.get((tenant, name))

    async def list_identity_providers(self, tenant: str) -> list[IdentityProviderRecord]:
        found = (p for (t, _), p in self._providers.items() if t == tenant)
        return sorted(found, key=lambda p: p.name)

    async def delete_identity_provider(self, tenant: str, name: str) -> bool:
        async with self._lock:
            return self._providers.pop((tenant, name), None) is not None

    async def get_login_failures(self, tenant: str, subject: str) -> LoginFailures | None:
        return self._login_failures.get((tenant, subject))

    async def record_login_failure(
        self,
        tenant: str,
        subject: str,
        next_state: Callable[[LoginFailures | None], LoginFailures],
    ) -> LoginFailures:
        async with self._lock:
            state = next_state(self._login_failures.get((tenant, subject)))
            self._login_failures[(tenant, subject)] = state
            return state

    async def clear_login_failures(self, tenant: str, subject: str) -> None:
        async with self._lock:
            self._login_failures.pop((tenant, subject), None)

    async def revocation_events(
        self, after: int, *, tenant: str | None = None, limit: int
    ) -> list[RevocationEvent]:
        found = [
            e for e in self._events if e.position > after and (tenant is None or e.tenant == tenant)
        ]
        return found[:limit]

    async def revocation_feed_bounds(self) -> FeedBounds:
        return self._feed_bounds

    async def prune_revocation_events(self, before: int) -> int:
        async with self._lock:
            old = [e.position for e in self._events if e.revoked_at < before]
            if not old:
                return 0
            through = max(old)
            kept = [e for e in self._events if e.position > through]
            removed = len(self._events) - len(kept)
            self._events = kept
            self._feed_bounds = dataclasses.replace(self._feed_bounds, pruned_through=through)
            return removed

    async def purge_login_failures(self, before: int) -> int:
        async with self._lock:
            stale = [
                key
                for key, state in self._login_failures.items()
                if state.last_failure_at < before and state.locked_until < before
            ]
            for key in stale:
                del self._login_failures[key]
            return len(stale)

    # --- signing keys -----------------------------------------------------------------------
    async def rotate_signing_key(self, new_key: SigningKeyRecord) -> None:
        async with self._lock:
            if new_key.kid in self._keys:
                raise AlreadyExists(key_exists(new_key.kid))
            for kid, key in self._keys.items():
                if key.status == KeyStatus.ACTIVE:
                    self._keys[kid] = dataclasses.replace(key, status=KeyStatus.VERIFYING)
            self._keys[new_key.kid] = dataclasses.replace(
                new_key, status=KeyStatus.ACTIVE, retired_at=None
            )

    async def add_first_signing_key(self, new_key: SigningKeyRecord) -> bool:
        async with self._lock:
            if new_key.kid in self._keys:
                raise AlreadyExists(key_exists(new_key.kid))
            published = (KeyStatus.ACTIVE, KeyStatus.VERIFYING)
            if any(key.status in published for key in self._keys.values()):
                return False
            self._keys[new_key.kid] = dataclasses.replace(
                new_key, status=KeyStatus.ACTIVE, retired_at=None
            )
            return True

    async def list_signing_keys(self) -> list[SigningKeyRecord]:
        by_kid = sorted(self._keys.values(), key=lambda k: k.kid)
        return sorted(by_kid, key=lambda k: k.created_at, reverse=True)  # stable: kid within

    async def retire_signing_key(
        self,
        kid: str,
        now: int,
        *,
        check: Callable[[Sequence[SigningKeyRecord]], None],
    ) -> SigningKeyRecord | None:
        async with self._lock:
            key = self._keys.get(kid)
            if key is None or key.status == KeyStatus.RETIRED:
                return key
            if key.status == KeyStatus.ACTIVE:
                raise InvalidRequest(ACTIVE_KEY_RETIRE)
            check(await self.list_signing_keys())
            key = dataclasses.replace(key, status=KeyStatus.RETIRED, retired_at=now)
            self._keys[kid] = key
            return key

    # --- service metadata -------------------------------------------------------------------
    async def get_meta(self, name: str) -> str | None:
        return self._meta.get(name)

    async def add_meta_if_absent(self, name: str, value: str) -> str:
        async with self._lock:
            return self._meta.setdefault(name, value)

    async def holds_data(self) -> bool:
        return bool(self._meta or self._tenants or self._keys or self._tokens)

    # --- tokens and sessions ----------------------------------------------------------------
    async def save_tokens(
        self, tokens: Sequence[TokenRecord], new_session: SessionRecord | None = None
    ) -> None:
        async with self._lock:
            if new_session is not None and new_session.session_id in self._sessions:
                raise AlreadyExists(IDENTIFIER_EXISTS)
            self._check_new(tokens)
            if new_session is not None:
                self._sessions[new_session.session_id] = new_session
            self._insert(tokens)

    async def find_token(self, digest: str) -> TokenView | None:
        token = self._tokens.get(digest)
        if token is None:
            return None
        customer = self._customers.get(token.customer_id) if token.customer_id else None
        return TokenView(token, customer.email if customer else None)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        return self._sessions.get(session_id)

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
        async with self._lock:
            session = self._sessions.get(session_id)
            if session is None or session.revoked_at is not None:
                return False
            if session.customer_id not in (None, customer_id):
                return False
            self._check_new(tokens)
            self._sessions[session_id] = dataclasses.replace(
                session, customer_id=customer_id, legal_entity_id=legal_entity_id, updated_at=now
            )
            if revoke_anonymous_refresh:
                for t in self._session_tokens(session_id):
                    anonymous_refresh = t.kind == TokenKind.ANONYMOUS and t.use == TokenUse.REFRESH
                    if anonymous_refresh and t.revoked_at is None:
                        self._tokens[t.digest] = dataclasses.replace(t, revoked_at=now)
            self._insert(tokens)
            return True

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
        async with self._lock:
            session = self._sessions.get(session_id)
            token = self._tokens.get(presented_digest)
            if session is None or session.revoked_at is not None:
                return RefreshOutcome.INVALID
            if not _live_refresh(token, session_id, now):
                return RefreshOutcome.INVALID
            assert token is not None
            outcome = _outcome(token, rotate, now - grace_seconds)
            if outcome is RefreshOutcome.GRACE:
                return outcome  # nothing changes: the winner saved the successors
            if outcome is not RefreshOutcome.REUSED:
                self._check_new(tokens)
            self._sessions[session_id] = _updated(session, update)
            if outcome is RefreshOutcome.REUSED:
                self._revoke_session(session_id, now)
                return outcome
            if outcome is RefreshOutcome.ROTATED:
                self._tokens[token.digest] = dataclasses.replace(token, rotated_at=now)
            self._insert(tokens)
            return outcome

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
        async with self._lock:
            session = self._sessions.get(session_id)
            token = self._tokens.get(access_digest)
            if session is None or session.revoked_at is not None:
                return False
            if session.customer_id and not after_login:
                return False
            live = (
                token is not None
                and token.use == TokenUse.ACCESS
                and token.kind == TokenKind.ANONYMOUS
                and token.session_id == session_id
                and token.revoked_at is None
                and token.expires_at > now
            )
            if not live:
                return False
            self._check_new(tokens)
            self._sessions[session_id] = _updated(session, update)
            self._insert(tokens)
            return True

    async def revoke_token(self, digest: str, now: int, *, fingerprint: str = "") -> int:
        async with self._lock:
            token = self._tokens.get(digest)
            if token is None or token.revoked_at is not None:
                return 0
            self._tokens[digest] = dataclasses.replace(token, revoked_at=now)
            self._record(token.tenant, now, fingerprints=[fingerprint] if fingerprint else [])
            return 1

    async def revoke_session(self, session_id: str, now: int) -> int:
        async with self._lock:
            return self._revoke_session(session_id, now)

    # --- a customer's sessions ---------------------------------------------------------------
    async def list_customer_sessions(
        self,
        customer_id: str,
        *,
        now: int,
        limit: int,
        after: SessionCursor | None = None,
    ) -> list[CustomerSession]:
        found = []
        for s in self._sessions.values():
            cursor = SessionCursor(s.created_at, s.session_id)
            if s.customer_id != customer_id or s.revoked_at is not None:
                continue
            if after is not None and cursor >= after:
                continue
            expires_at = self._session_expiry(s.session_id)
            if expires_at is None or expires_at <= now:
                continue
            found.append((cursor, _listed(s, expires_at)))
        found.sort(key=lambda item: item[0], reverse=True)
        return [listed for _, listed in found[:limit]]

    async def revoke_customer_session(self, customer_id: str, session_id: str, *, now: int) -> bool:
        async with self._lock:
            s = self._sessions.get(session_id)
            if s is None or s.customer_id != customer_id or s.revoked_at is not None:
                return False
            expires_at = self._session_expiry(session_id)
            if expires_at is None or expires_at <= now:
                return False
            self._revoke_session(session_id, now)
            return True

    async def revoke_customer_sessions(
        self, customer_id: str, *, except_session_id: str | None = None, now: int
    ) -> list[str]:
        async with self._lock:
            return self._end_customer_sessions(customer_id, except_session_id, now)

    async def revoke_legal_entity_sessions(
        self, tenant: str, legal_entity_id: str, *, now: int
    ) -> list[str]:
        async with self._lock:
            return self._revoke_sessions(
                lambda s: s.tenant == tenant and s.legal_entity_id == legal_entity_id, now
            )

    # --- cleanup ----------------------------------------------------------------------------
    async def purge_expired(self, now: int, *, batch_size: int) -> PurgeReport:
        """All at once, under the lock (batches are a SQL concern; the size is checked alike)."""
        check_purge_batch(batch_size)
        async with self._lock:
            live = {
                t.session_id
                for t in self._tokens.values()
                if t.session_id is not None and t.expires_at > now
            }
            dead = {
                sid
                for sid, s in self._sessions.items()
                if s.revoked_at is not None or sid not in live
            }
            doomed = [
                digest
                for digest, t in self._tokens.items()
                if (t.session_id is None and t.expires_at <= now) or t.session_id in dead
            ]
            for digest in doomed:
                del self._tokens[digest]
            for sid in dead:
                del self._sessions[sid]
            return PurgeReport(tokens_removed=len(doomed), sessions_removed=len(dead))

    # --- helpers (caller holds the lock) ----------------------------------------------------
    def _session_tokens(self, session_id: str) -> list[TokenRecord]:
        return [t for t in self._tokens.values() if t.session_id == session_id]

    def _revoke_session(self, session_id: str, now: int, *, recorded: bool = True) -> int:
        """`recorded`: the feed event is this call's to record (not a caller's, for many)."""
        session = self._sessions.get(session_id)
        if session is not None and session.revoked_at is None:
            self._sessions[session_id] = dataclasses.replace(session, revoked_at=now)
            if recorded:
                self._record(session.tenant, now, sessions=[session_id])
        changed = 0
        for t in self._session_tokens(session_id):
            if t.revoked_at is None:
                self._tokens[t.digest] = dataclasses.replace(t, revoked_at=now)
                changed += 1
        return changed

    def _revoke_sessions(self, chosen: Callable[[SessionRecord], bool], now: int) -> list[str]:
        ids = [sid for sid, s in self._sessions.items() if s.revoked_at is None and chosen(s)]
        for sid in ids:
            self._revoke_session(sid, now, recorded=False)
        if ids:
            self._record(self._sessions[ids[0]].tenant, now, sessions=ids)
        return ids

    def _record(
        self,
        tenant: str,
        now: int,
        *,
        fingerprints: Sequence[str] = (),
        sessions: Sequence[str] = (),
    ) -> None:
        if not (fingerprints or sessions):
            return
        position = self._feed_bounds.head + 1
        event = RevocationEvent(position, tenant, now, tuple(fingerprints), tuple(sessions))
        self._events.append(event)
        self._feed_bounds = dataclasses.replace(self._feed_bounds, head=position)

    def _session_expiry(self, session_id: str) -> int | None:
        """When the last unrevoked token of the session expires; None: it has none."""
        live = [t.expires_at for t in self._session_tokens(session_id) if t.revoked_at is None]
        return max(live, default=None)

    def _check_new(self, tokens: Sequence[TokenRecord]) -> None:
        digests = [t.digest for t in tokens]
        if len(set(digests)) != len(digests) or any(d in self._tokens for d in digests):
            raise AlreadyExists(IDENTIFIER_EXISTS)

    def _insert(self, tokens: Sequence[TokenRecord]) -> None:
        self._tokens.update((t.digest, t) for t in tokens)


def _live_refresh(token: TokenRecord | None, session_id: str, now: int) -> bool:
    return (
        token is not None
        and token.use == TokenUse.REFRESH
        and token.session_id == session_id
        and token.revoked_at is None
        and token.expires_at > now
    )


def _outcome(token: TokenRecord, rotate: bool, grace_floor: int) -> RefreshOutcome:
    if not rotate:
        return RefreshOutcome.KEPT
    if token.rotated_at is None:
        return RefreshOutcome.ROTATED
    return RefreshOutcome.GRACE if token.rotated_at >= grace_floor else RefreshOutcome.REUSED


def _updated(session: SessionRecord, change: SessionUpdate) -> SessionRecord:
    """The session after a refresh: only the fields the caller set change."""
    context = dataclasses.replace(
        session.context,
        **{k: v for k, v in dataclasses.asdict(change.context).items() if v is not None},
    )
    legal_entity_id = session.legal_entity_id
    if change.legal_entity_id is not None:
        legal_entity_id = change.legal_entity_id
    return dataclasses.replace(
        session, context=context, legal_entity_id=legal_entity_id, updated_at=change.updated_at
    )


def _listed(s: SessionRecord, expires_at: int) -> CustomerSession:
    return CustomerSession(
        session_id=s.session_id,
        tenant=s.tenant,
        client_id=s.client_id,
        created_at=s.created_at,
        updated_at=s.updated_at,
        expires_at=expires_at,
        legal_entity_id=s.legal_entity_id,
    )


def _email(customer: CustomerRecord) -> str:
    return customer.email
