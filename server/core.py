"""The service's collaborators, built once at start-up and handed to every grant and handler."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from server import metrics
from server.abuse import AbuseControls
from server.clock import Clock, SystemClock
from server.mail.delivery import MailDelivery, mailer_for
from server.mail.message import Mailer
from server.outbound_http import OutboundHttp
from server.passwords import Passwords
from server.provider_keys import ProviderKeys
from server.revocation_feed import RevocationFeed
from server.secret_key import load_secret_key
from server.settings import ConfigError, Settings
from server.signing import KeyCipher, KeyRing
from server.store.cached import CachedStore
from server.store.protocol import TokenStore
from server.tokens import KeyedDigest

if TYPE_CHECKING:
    import httpx  # only the type of a test's transport: httpx loads with the first call out


@dataclasses.dataclass(frozen=True)
class Core:
    settings: Settings
    store: TokenStore
    clock: Clock
    digests: KeyedDigest
    passwords: Passwords
    cipher: KeyCipher
    keys: KeyRing
    # Per-process state of the abuse controls (address throttle, anonymous quota).
    abuse: AbuseControls
    # Account mail (sign-up links, password resets, e-mail changes), delivered off the request.
    mail: MailDelivery
    # The tenants' identity providers: the one outbound HTTP client, and their keys.
    outbound: OutboundHttp
    provider_keys: ProviderKeys
    # Every committed revocation, for the resource servers that watch them.
    feed: RevocationFeed

    async def close(self) -> None:
        """Closes what the core holds: the feed, the store and the outbound HTTP client."""
        await self.feed.close()
        await self.outbound.close()
        await self.store.close()

    def now(self) -> int:
        return int(self.clock.now())


def build_core(
    settings: Settings,
    store: TokenStore,
    *,
    clock: Clock | None = None,
    secret: bytes | None = None,
    http_transport: httpx.AsyncBaseTransport | None = None,
    mailer: Mailer | None = None,
) -> Core:
    """Wires the collaborators; `secret` defaults to the configured server secret (read, never
    created: an entry point that starts the service uses server.startup.open_core, which also
    proves that the secret is the database's). `http_transport` replaces the network under the
    outbound HTTP client (unit tests); `mailer` defaults to the settings' (SMTP or the outbox
    folder: server/mail/delivery.py)."""
    if settings.introspection_cache_hint_seconds < 0:
        raise ConfigError("TOKENSERVICE_INTROSPECTION_CACHE_HINT_SECONDS must not be negative")
    if settings.revocation_feed_retention_seconds < 0:
        raise ConfigError("TOKENSERVICE_REVOCATION_FEED_RETENTION_SECONDS must not be negative")
    clock = clock or SystemClock()
    secret = secret if secret is not None else load_secret_key(settings)
    cipher = KeyCipher(secret)
    outbound = OutboundHttp(settings, http_transport)
    return Core(
        feed=revocation_feed(settings, store),
        settings=settings,
        store=store,
        clock=clock,
        digests=KeyedDigest(secret),
        passwords=Passwords(settings, store, clock=clock),
        cipher=cipher,
        keys=KeyRing(
            store, cipher, clock, activation_seconds=settings.signing_key_activation_seconds
        ),
        abuse=AbuseControls.from_settings(settings),
        outbound=outbound,
        provider_keys=ProviderKeys(settings, outbound, clock),
        mail=MailDelivery(mailer or mailer_for(settings), max_pending=settings.mail_max_pending),
    )


def revocation_feed(settings: Settings, store: TokenStore) -> RevocationFeed:
    """The feed, woken whenever the token cache hears of a revocation (server/revocation_feed.py),
    reading often while the replica cannot hear the others (its listener is not listening);
    without a cache it reads every `revocation_feed_poll_seconds`."""
    listener = store.listener if isinstance(store, CachedStore) else None
    feed = RevocationFeed(
        store,
        poll_seconds=settings.revocation_feed_poll_seconds,
        heartbeat_seconds=settings.revocation_stream_heartbeat_seconds,
        max_watchers=settings.revocation_streams_max,
        hearing=None if listener is None else listener.listening.is_set,
    )
    if isinstance(store, CachedStore):
        store.tokens.on_revocation.append(feed.wake)
    metrics.track_revocation_feed(feed)
    return feed
