"""A TokenStore with an in-process cache in front of the two reads every request makes.

Introspection is the call every other service makes on every request of its own; issuing and
refreshing start with the client look-up. Both would otherwise be one database round trip each.

- Tokens (`find_token`), keyed by digest, for at most `max_age` seconds, at most `capacity`
  entries, least recently used out first. Only tokens that exist are cached: an unknown token
  is looked up every time, so guessing costs the guesser, not a growing cache. A cached token
  stays correct while its row does not change, and the expiry is re-checked from the record on
  every use, so the entry never outlives the token.
- Rows change by revocation, rotation and customer login. Done through this store (this
  replica), they drop the affected entries before the call returns: the token by digest, and
  every token of a session by session id (of each session a customer's or a legal entity's
  revocation, password change or reset ended, by the ids the store returns; when such a call
  fails, the write may have committed all the same, so every entry is dropped). An e-mail
  change (which changes the e-mail cached tokens carry) is rare, and drops every entry. Done
  by another replica on PostgreSQL, they reach this one by the notice the revoking transaction
  sent (server/store/notices.py, heard by server/store/listener.py, which suspends the cache
  whenever it is not known to be listening); whatever no notice names, when the entry ages
  out, after `max_age` at the latest (TOKENSERVICE_TOKEN_CACHE_SECONDS).
- A database read that races with a change (it read the row before the change committed, and
  answers after the entries were dropped) must not put the old row back: every change bumps a
  generation counter, and a read only caches its row when no change happened meanwhile.
- Clients (`get_client`): no call changes or deletes a client record once created, so a found
  client is cached until evicted. (Should clients ever become mutable, their writes must drop
  them here as the token writes do.)

Every other method of TokenStore is forwarded, written out: a write the caches do not hear of
is a write that could leave a stale entry, so each write either drops entries
(`DROPPING_WRITES`) or says why it changes no cached row (`WRITES_KEEPING_CACHED_ROWS`);
tests/unit/test_token_cache.py fails on a store method that is in neither.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence

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
from server.store.listener import RevocationListener
from server.store.protocol import TokenStore
from server.store.token_cache import TokenCache

# The reads answered from the caches.
CACHED_READS = frozenset({"find_token", "get_client"})
# Reads that go to the store every time.
UNCACHED_READS = frozenset(
    {
        "ping",
        "get_tenant",
        "list_tenants",
        "list_clients",
        "find_customer",
        "get_customer",
        "password_hash_sample",
        "get_login_failures",
        "list_signing_keys",
        "get_meta",
        "holds_data",
        "get_session",
        "get_identity_provider",
        "list_identity_providers",
        "list_customer_sessions",
        "get_account_policy",
        "revocation_events",
        "revocation_feed_bounds",
    }
)
# Writes that drop the cached entries of the rows they change, before they return.
DROPPING_WRITES = frozenset(
    {
        "start_customer_session",
        "refresh",
        "revoke_token",
        "revoke_session",
        "purge_expired",
        "revoke_customer_session",
        "revoke_customer_sessions",
        "revoke_legal_entity_sessions",
        "reset_password",
        "change_password",
        "change_email",
    }
)
# Writes that change no cached row (a token by digest with its customer's email, a client), and
# why.
WRITES_KEEPING_CACHED_ROWS: dict[str, str] = {
    "close": "closes the connections; changes no row",
    "create_tenant": "tenants are not cached",
    "set_allowed_origins": "tenants are not cached",
    "create_client": "inserts a new client; only clients found are cached",
    "put_identity_provider": "identity providers are not cached here",
    "delete_identity_provider": "identity providers are not cached here",
    "create_customer": "inserts a new customer; a cached token's email is that of an existing one",
    "replace_password_hash": "password hashes are not cached",
    "record_login_failure": "login-failure counters are not cached",
    "clear_login_failures": "login-failure counters are not cached",
    "purge_login_failures": "login-failure counters are not cached",
    "rotate_signing_key": "signing keys are not cached here (signing.KeyRing reloads them)",
    "add_first_signing_key": "signing keys are not cached here (signing.KeyRing reloads them)",
    "retire_signing_key": "signing keys are not cached here (signing.KeyRing reloads them)",
    "add_meta_if_absent": "service metadata is not cached",
    "save_tokens": "inserts new tokens and sessions only; only tokens found are cached",
    "continue_anonymous_session": "updates the session (not cached), inserts new tokens only",
    "set_account_policy": "account policies are not cached",
    "save_account_link": "account links are not cached",
    "purge_account_links": "account links are not cached",
    "activate_customer": "changes a customer's active flag and a link; neither is cached",
    "prune_revocation_events": "the revocation feed's events are not cached",
}


class CachedStore:
    """`store` with `tokens` in front of find_token and a client cache in front of get_client;
    every other method forwards to the store's own."""

    def __init__(self, store: TokenStore, tokens: TokenCache, *, client_capacity: int) -> None:
        self._store = store
        self.tokens = tokens
        self._clients: collections.OrderedDict[str, ClientRecord] = collections.OrderedDict()
        self._client_capacity = client_capacity
        # On PostgreSQL, what keeps `tokens` in step with the other replicas' revocations
        # (server/store/listener.py); closed with the store.
        self.listener: RevocationListener | None = None

    @property
    def inner(self) -> TokenStore:
        return self._store

    # --- reads ------------------------------------------------------------------------------
    async def find_token(self, digest: str) -> TokenView | None:
        view = self.tokens.get(digest)
        if view is not None:
            return view
        generation = self.tokens.generation
        view = await self._store.find_token(digest)
        if view is not None:
            self.tokens.put(view, generation)
        return view

    async def get_client(self, client_id: str) -> ClientRecord | None:
        client = self._clients.get(client_id)
        if client is not None:
            self._clients.move_to_end(client_id)
            return client
        client = await self._store.get_client(client_id)
        if client is not None and self._client_capacity > 0:
            self._clients[client_id] = client
            while len(self._clients) > self._client_capacity:
                self._clients.popitem(last=False)
        return client

    # --- writes that change tokens: drop what they change -------------------------------------
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
        try:
            return await self._store.start_customer_session(
                session_id,
                customer_id,
                legal_entity_id,
                now,
                tokens,
                revoke_anonymous_refresh=revoke_anonymous_refresh,
            )
        finally:
            self.tokens.drop_session(session_id)

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
        outcome = RefreshOutcome.REUSED  # should the call fail, it may have revoked
        try:
            outcome = await self._store.refresh(
                presented_digest,
                session_id,
                tokens,
                update,
                now=now,
                grace_seconds=grace_seconds,
                rotate=rotate,
            )
            return outcome
        finally:
            self.tokens.drop_token(presented_digest)
            self.tokens.drop_session(session_id)
            if outcome is RefreshOutcome.REUSED:
                self.tokens.revoked()

    async def purge_expired(self, now: int, *, batch_size: int) -> PurgeReport:
        """Rows it deletes are inactive already; dropping everything (once per sweep) keeps
        find_token answering None for them, as the store does."""
        try:
            return await self._store.purge_expired(now, batch_size=batch_size)
        finally:
            self.tokens.clear()

    async def revoke_token(self, digest: str, now: int, *, fingerprint: str = "") -> int:
        try:
            return await self._store.revoke_token(digest, now, fingerprint=fingerprint)
        finally:
            self.tokens.drop_token(digest)
            self.tokens.revoked()

    async def revoke_session(self, session_id: str, now: int) -> int:
        try:
            return await self._store.revoke_session(session_id, now)
        finally:
            self.tokens.drop_session(session_id)
            self.tokens.revoked()

    async def revoke_customer_session(self, customer_id: str, session_id: str, *, now: int) -> bool:
        try:
            return await self._store.revoke_customer_session(customer_id, session_id, now=now)
        finally:
            self.tokens.drop_session(session_id)
            self.tokens.revoked()

    async def revoke_customer_sessions(
        self, customer_id: str, *, except_session_id: str | None = None, now: int
    ) -> list[str]:
        with self._dropping_all_on_failure():
            ended = await self._store.revoke_customer_sessions(
                customer_id, except_session_id=except_session_id, now=now
            )
        self._drop_sessions(ended)
        return ended

    async def revoke_legal_entity_sessions(
        self, tenant: str, legal_entity_id: str, *, now: int
    ) -> list[str]:
        with self._dropping_all_on_failure():
            ended = await self._store.revoke_legal_entity_sessions(tenant, legal_entity_id, now=now)
        self._drop_sessions(ended)
        return ended

    @contextlib.contextmanager
    def _dropping_all_on_failure(self) -> Iterator[None]:
        """A revoke that failed may have committed (the answer was lost), and its session ids
        are not known: every entry goes."""
        try:
            yield
        except BaseException:
            self.tokens.revoked_unknown()
            raise

    def _drop_sessions(self, session_ids: Sequence[str]) -> None:
        """Drops the entries of the sessions a revocation ended and, if it ended any, tells the
        feed."""
        if len(session_ids) >= len(self.tokens):
            self.tokens.clear()  # cheaper than one look-up each, and as correct
        else:
            for session_id in session_ids:
                self.tokens.drop_session(session_id)
        if session_ids:
            self.tokens.revoked()

    # A password change or reset ends sessions of the customer: their entries go, as for the
    # other revocations of a customer's sessions.
    async def reset_password(
        self, tenant: str, digest: str, new_hash: str, now: int
    ) -> list[str] | None:
        with self._dropping_all_on_failure():
            ended = await self._store.reset_password(tenant, digest, new_hash, now)
        self._drop_sessions(ended or [])
        return ended

    async def change_password(
        self, customer_id: str, expected_hash: str, new_hash: str, keep_session_id: str, now: int
    ) -> list[str] | None:
        with self._dropping_all_on_failure():
            ended = await self._store.change_password(
                customer_id, expected_hash, new_hash, keep_session_id, now
            )
        self._drop_sessions(ended or [])
        return ended

    # An e-mail change changes the email its cached tokens carry: rare, so every entry goes.
    async def change_email(self, tenant: str, digest: str, now: int) -> CustomerRecord | None:
        try:
            return await self._store.change_email(tenant, digest, now)
        finally:
            self.tokens.revoked_unknown()

    # --- everything else: forwarded (see UNCACHED_READS, WRITES_KEEPING_CACHED_ROWS) ------------
    async def get_account_policy(self, tenant: str) -> AccountPolicy | None:
        return await self._store.get_account_policy(tenant)

    async def set_account_policy(self, policy: AccountPolicy) -> None:
        await self._store.set_account_policy(policy)

    async def save_account_link(self, link: AccountLink) -> None:
        await self._store.save_account_link(link)

    async def activate_customer(self, tenant: str, digest: str, now: int) -> CustomerRecord | None:
        return await self._store.activate_customer(tenant, digest, now)

    async def purge_account_links(self, now: int) -> int:
        return await self._store.purge_account_links(now)

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        await self._store.close()

    async def ping(self) -> None:
        await self._store.ping()

    async def create_tenant(self, tenant: TenantRecord) -> None:
        await self._store.create_tenant(tenant)

    async def get_tenant(self, name: str) -> TenantRecord | None:
        return await self._store.get_tenant(name)

    async def list_tenants(self) -> list[TenantRecord]:
        return await self._store.list_tenants()

    async def set_allowed_origins(self, name: str, origins: Sequence[str]) -> TenantRecord | None:
        return await self._store.set_allowed_origins(name, origins)

    async def put_identity_provider(self, provider: IdentityProviderRecord) -> None:
        await self._store.put_identity_provider(provider)

    async def get_identity_provider(self, tenant: str, name: str) -> IdentityProviderRecord | None:
        return await self._store.get_identity_provider(tenant, name)

    async def list_identity_providers(self, tenant: str) -> list[IdentityProviderRecord]:
        return await self._store.list_identity_providers(tenant)

    async def delete_identity_provider(self, tenant: str, name: str) -> bool:
        return await self._store.delete_identity_provider(tenant, name)

    async def create_client(self, client: ClientRecord) -> None:
        await self._store.create_client(client)

    async def list_clients(self, tenant: str) -> list[ClientRecord]:
        return await self._store.list_clients(tenant)

    async def create_customer(self, customer: CustomerRecord) -> None:
        await self._store.create_customer(customer)

    async def find_customer(self, tenant: str, email: str) -> CustomerRecord | None:
        return await self._store.find_customer(tenant, email)

    async def get_customer(self, customer_id: str) -> CustomerRecord | None:
        return await self._store.get_customer(customer_id)

    async def password_hash_sample(self, tenant: str, limit: int) -> list[str]:
        return await self._store.password_hash_sample(tenant, limit)

    async def replace_password_hash(self, customer_id: str, expected: str, new: str) -> bool:
        return await self._store.replace_password_hash(customer_id, expected, new)

    async def get_login_failures(self, tenant: str, subject: str) -> LoginFailures | None:
        return await self._store.get_login_failures(tenant, subject)

    async def record_login_failure(
        self,
        tenant: str,
        subject: str,
        next_state: Callable[[LoginFailures | None], LoginFailures],
    ) -> LoginFailures:
        return await self._store.record_login_failure(tenant, subject, next_state)

    async def clear_login_failures(self, tenant: str, subject: str) -> None:
        await self._store.clear_login_failures(tenant, subject)

    async def purge_login_failures(self, before: int) -> int:
        return await self._store.purge_login_failures(before)

    async def revocation_events(
        self, after: int, *, tenant: str | None = None, limit: int
    ) -> list[RevocationEvent]:
        return await self._store.revocation_events(after, tenant=tenant, limit=limit)

    async def revocation_feed_bounds(self) -> FeedBounds:
        return await self._store.revocation_feed_bounds()

    async def prune_revocation_events(self, before: int) -> int:
        return await self._store.prune_revocation_events(before)

    async def rotate_signing_key(self, new_key: SigningKeyRecord) -> None:
        await self._store.rotate_signing_key(new_key)

    async def add_first_signing_key(self, new_key: SigningKeyRecord) -> bool:
        return await self._store.add_first_signing_key(new_key)

    async def list_signing_keys(self) -> list[SigningKeyRecord]:
        return await self._store.list_signing_keys()

    async def retire_signing_key(
        self,
        kid: str,
        now: int,
        *,
        check: Callable[[Sequence[SigningKeyRecord]], None],
    ) -> SigningKeyRecord | None:
        return await self._store.retire_signing_key(kid, now, check=check)

    async def get_meta(self, name: str) -> str | None:
        return await self._store.get_meta(name)

    async def add_meta_if_absent(self, name: str, value: str) -> str:
        return await self._store.add_meta_if_absent(name, value)

    async def holds_data(self) -> bool:
        return await self._store.holds_data()

    async def save_tokens(
        self, tokens: Sequence[TokenRecord], new_session: SessionRecord | None = None
    ) -> None:
        await self._store.save_tokens(tokens, new_session)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        return await self._store.get_session(session_id)

    async def list_customer_sessions(
        self,
        customer_id: str,
        *,
        now: int,
        limit: int,
        after: SessionCursor | None = None,
    ) -> list[CustomerSession]:
        return await self._store.list_customer_sessions(
            customer_id, now=now, limit=limit, after=after
        )

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
        return await self._store.continue_anonymous_session(
            access_digest, session_id, tokens, update, now=now, after_login=after_login
        )


def cached(
    store: TokenStore,
    *,
    token_capacity: int,
    max_age: float,
    client_capacity: int,
    on_lookup: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TokenStore:
    """`store` behind the caches; with no token capacity and no client capacity, `store`.
    `clock` (seconds, monotonic) ages the token entries; tests move it by hand."""
    if token_capacity <= 0 and client_capacity <= 0:
        return store
    tokens = TokenCache(capacity=token_capacity, max_age=max_age, on_lookup=on_lookup, clock=clock)
    return CachedStore(store, tokens, client_capacity=client_capacity)
