"""One frozen Settings object, read once from TOKENSERVICE_* environment variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping


class ConfigError(Exception):
    """A setting the service cannot start with: named by its environment variable, and said
    what it must be. Not a TokenServiceError: no caller's request is at fault, and no transport
    answers it; the CLI prints it and exits 2."""


DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./tokenservice.db"


@dataclasses.dataclass(frozen=True)
class Settings:
    grpc_addr: str = "0.0.0.0:50051"
    # The HTTP bridge beside gRPC; empty turns it off.
    http_addr: str = "0.0.0.0:8080"
    database_url: str = DEFAULT_DATABASE_URL
    # The HMAC key for token and client-secret digests; when empty, see server.secret_key.
    secret_key: str = ""
    secret_key_file: str = ""
    issuer: str = "http://localhost:8080"
    saas_audience: str = "saas"
    anonymous_access_ttl: int = 3600
    anonymous_refresh_ttl: int = 86400
    customer_access_ttl: int = 14400
    customer_refresh_ttl: int = 86400
    service_access_ttl: int = 14400
    session_idle_time: int = 120
    refresh_grace_seconds: int = 10
    # Off (the default) serves the Emporix storefront SDK: its pre-login anonymous refresh token
    # keeps refreshing anonymous tokens after customer login, and a customer refresh accepts any
    # active anonymous access token of the tenant as its bearer. On: login revokes the session's
    # anonymous refresh tokens, the deprecated anonymous_token refresh stops at login, and the
    # bearer must be an access token of the session itself (docs/security.md).
    strict_customer_sessions: bool = False
    # A rotated-in signing key is published this long before it signs: the JWKS max-age (60 s)
    # plus PyJWT's refetch cooldown (30 s) plus a margin.
    signing_key_activation_seconds: int = 120
    max_message_bytes: int = 64 * 1024
    # gRPC limits (server/grpc_options.py, server/unary_calls.py; README "Limits"): what
    # clients can hold. Each must be greater than 0, but the connection age and the keepalive
    # time, where 0 is off, and the age grace, where 0 is none. The connection cap is lowered
    # at start if the open-file limit cannot hold it.
    grpc_message_timeout_seconds: float = 10.0
    grpc_max_concurrent_rpcs: int = 2000
    # At that limit, a call that has waited this long for its request message gives its place
    # to a new call (clients send the message with the headers).
    grpc_evictable_after_seconds: float = 1.0
    grpc_max_concurrent_streams: int = 100
    grpc_max_connections: int = 1000
    grpc_max_connection_idle_seconds: float = 300.0
    grpc_max_connection_age_seconds: float = 3600.0
    grpc_max_connection_age_grace_seconds: float = 30.0
    grpc_keepalive_time_seconds: float = 120.0
    grpc_keepalive_timeout_seconds: float = 20.0
    grpc_keepalive_min_interval_seconds: float = 30.0
    grpc_max_metadata_bytes: int = 16 * 1024
    shutdown_grace_seconds: float = 10.0
    # After health turns NOT_SERVING and before the server stops taking calls: lets balancers
    # notice, and lets calls already received but not yet dispatched start instead of being
    # cancelled by the stop.
    shutdown_delay_seconds: float = 1.0
    sqlite_busy_timeout_ms: int = 5000
    # `serve`: processes serving the same ports (SO_REUSEPORT); more than one needs PostgreSQL.
    workers: int = 1
    # PostgreSQL connection pool, per process.
    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_pool_timeout_seconds: float = 5.0
    db_connect_timeout_seconds: float = 5.0
    db_statement_timeout_seconds: float = 10.0
    db_conflict_retries: int = 5
    # A pooled PostgreSQL connection idle this long is pinged before use.
    db_ping_idle_seconds: float = 1.0
    # In-process caches (server/store/cached.py). A token revoked or rotated by another replica
    # stays cached here at most token_cache_seconds; 0 entries turns a cache off.
    # The most sessions one page of a customer's session listing holds, and a page's size when
    # the caller names none (server/customer_sessions.py; 1 to 1000).
    sessions_page_size: int = 50
    token_cache_size: int = 50_000
    token_cache_seconds: float = 2.0
    # How long a resource server may cache an active introspection answer (`cache_seconds` in
    # the answer, never past the token's expiry; docs/resource-servers.md). The default is this
    # replica's own token_cache_seconds: the staleness replicas already accept from each other.
    # 0 tells resource servers not to cache.
    introspection_cache_hint_seconds: int = 2
    # PostgreSQL: how often the revocation listener proves its connection alive (SELECT 1, which
    # must answer within the same time); a replica that cannot tell reads every token from the
    # database (server/store/listener.py).
    revocation_listener_probe_seconds: float = 1.0
    # PostgreSQL: how far behind the others' revocations a replica's cache may be: it answers
    # from the cache only while its listener has proven, within this time, that it heard every
    # revocation committed until then (a heartbeat every quarter of it while the cache is in
    # use); past that, from the database (server/store/listener.py).
    revocation_max_lag_seconds: float = 0.08
    # PostgreSQL: where the revocation listener connects (empty: database_url). Point it at
    # PostgreSQL itself when database_url goes through a pooler in transaction mode, which
    # delivers no notices (server/store/listener.py).
    revocation_listener_url: str = ""
    # The revocation feed (server/revocation_feed.py, docs/resource-servers.md): how long its
    # events are kept for watchers to resume from (a watcher further behind is told to reset);
    # how often it reads the store when nothing woke it; how long a watcher waits for a
    # heartbeat at most; how many watchers one process serves (gRPC and HTTP together).
    revocation_feed_retention_seconds: int = 86_400
    revocation_feed_poll_seconds: float = 1.0
    revocation_stream_heartbeat_seconds: float = 15.0
    revocation_streams_max: int = 256
    client_cache_size: int = 10_000
    # `serve`: how often the janitor deletes expired tokens and dead sessions; 0 turns it off.
    janitor_interval_seconds: float = 600.0
    # `serve`: how often freed memory is handed back to the system (server/memory_trim.py).
    memory_trim_interval_seconds: float = 30.0
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    # Abuse controls (server/abuse.py; README "Abuse controls"). Customer login: the
    # max_failures-th failed login in a row locks the account (or the client address) for
    # wait_increment seconds, each further failure for one increment more, up to max_wait; a
    # quiet period of reset seconds forgets the count. 0 failures turns a lock off.
    login_max_failures_per_account: int = 5
    login_max_failures_per_address: int = 100
    login_lock_wait_increment_seconds: int = 60
    login_lock_max_wait_seconds: int = 900
    login_failure_reset_seconds: int = 43200
    # Entries of the per-process tables (client addresses, anonymous quota buckets).
    login_address_table_size: int = 100_000
    # Anonymous tokens per storefront client and second, per process (a token bucket of
    # `burst`); 0 turns the quota off.
    anonymous_tokens_per_second: float = 0.0
    anonymous_tokens_burst: int = 100
    # Comma-separated addresses or CIDRs whose X-Forwarded-For (HTTP) or x-forwarded-for
    # metadata (gRPC, from a standalone bridge) names the client to throttle.
    trusted_proxies: str = ""
    # HTTP connection limits (http_bridge/connection_limits.py; README "Limits"), per process.
    # The connection cap is lowered at start if the open-file limit cannot hold it.
    http_max_connections: int = 4096
    http_header_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 10.0
    http_max_header_bytes: int = 16384
    http_max_headers: int = 100
    # Longer than common balancers' idle timeouts (AWS ALB: 60 s), so that a balancer never
    # reuses a connection the service is closing; idle connections are evicted at the cap.
    http_keepalive_timeout_seconds: float = 75.0
    # CORS (http_bridge/cors.py; README "Configuration"): comma-separated origins
    # (scheme://host[:port]) whose browser pages may call every browser-facing endpoint, beside
    # each tenant's own allowed origins on its storefront endpoints; how long a browser may
    # keep a preflight's answer; and the bridge's cache of tenants' origins (how long a change
    # takes to reach it, and how many tenants it holds).
    cors_allowed_origins: str = ""
    cors_max_age_seconds: int = 600
    cors_tenant_cache_seconds: float = 30.0
    cors_tenant_cache_size: int = 10_000
    # External identity providers (token exchange, social login; docs/identity-providers.md):
    # the outbound HTTP client's timeout per request and response size limit; how long a
    # provider's JWKS is used before it is fetched again; how soon after a fetch a token with
    # an unknown kid may cause another (per provider: forged kids cost the forger, not the
    # provider); the clock leeway on the provider's exp, iat and nbf; and the largest subject
    # token or authorization code accepted.
    idp_http_timeout_seconds: float = 5.0
    idp_max_response_bytes: int = 256 * 1024
    idp_jwks_cache_seconds: float = 300.0
    idp_jwks_refetch_min_seconds: float = 30.0
    idp_leeway_seconds: int = 60
    idp_max_token_bytes: int = 8192
    # Provider URLs must be https; on, http to a loopback address (127.0.0.1, [::1],
    # localhost) is allowed too (local development and the tests).
    idp_allow_http_loopback: bool = False
    # Customer accounts (server/accounts/, docs/accounts.md). The mailed one-time tokens' lifetimes.
    signup_link_ttl_seconds: int = 86400
    password_reset_ttl_seconds: int = 3600
    email_change_ttl_seconds: int = 3600
    # The link in a mail: this base with "{tenant}" replaced, then "/<action>?token=<token>"
    # (action: signup-optin, password-reset, email-change); empty: the mail carries the token alone.
    account_link_base_url: str = ""
    # Sign-up, password reset and opt-in resend (server/abuse.py AccountRequestThrottle): the
    # max-th request in a row per e-mail (in the store, every replica) or per client address (per
    # process) locks further ones for wait seconds, each further one for one more wait, up to
    # max_wait; a quiet period of reset seconds forgets the count. 0 requests turns one off.
    account_requests_per_email: int = 5
    account_requests_per_address: int = 50
    account_throttle_wait_seconds: int = 300
    account_throttle_max_wait_seconds: int = 3600
    account_throttle_reset_seconds: int = 3600
    # Mail (server/mail/). Without smtp_host, each message is a file (mode 0600) in the outbox
    # folder: mail_outbox_dir, or "outbox" beside the SQLite database (else in the working dir).
    mail_from: str = "no-reply@localhost"
    mail_outbox_dir: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_username: str = ""
    # A file holding the SMTP password alone (never the password itself in the environment).
    smtp_password_file: str = ""
    # CA certificates (PEM) that the server's STARTTLS certificate is checked against; empty:
    # the system's.
    smtp_ca_file: str = ""
    smtp_timeout_seconds: float = 10.0
    # Messages waiting to be delivered, per process; beyond it a message is dropped and logged.
    mail_max_pending: int = 100
    provision_demo: bool = True
    log_level: str = "INFO"
    # The serving commands' event loop: uvloop, or asyncio for the standard library's
    # (launcher/event_loop.py).
    event_loop: str = "uvloop"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Builds Settings from TOKENSERVICE_<FIELD> variables, converting to each field's type."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(f"TOKENSERVICE_{field.name.upper()}")
            if raw is None:
                continue
            values[field.name] = _convert(field.name, raw, field.type)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _convert(name: str, raw: str, type_name: object) -> object:
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"TOKENSERVICE_{name.upper()} must be a number") from None
    if kind == "bool":
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"TOKENSERVICE_{name.upper()} must be true or false")
    return raw
