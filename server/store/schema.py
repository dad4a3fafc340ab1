"""The tables, as SQLAlchemy Core metadata.

Portable SQL only (SQLite and PostgreSQL): strings, integers, booleans, bytes. Timestamps are
epoch seconds in BIGINT so that no driver converts time zones. The migrations in `migrations/`
create exactly these tables; a test compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)

# Deterministic constraint names, so that later migrations can alter them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

tenants = Table(
    "tenants",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    # Space-separated browser origins (CORS, migration 0005); empty: none.
    Column("allowed_origins", Text, nullable=False, server_default=""),
)

clients = Table(
    "clients",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("tenant", String(64), ForeignKey("tenants.name"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(255), nullable=False),
    Column("scopes", Text, nullable=False),  # space-separated
    Column("secret_digest", String(128), nullable=True),
    Column("access_token_ttl", Integer, nullable=True),
    Column("refresh_token_ttl", Integer, nullable=True),
    Column("refresh_rotation_disabled", Boolean, nullable=False, server_default=false()),
    Column("created_at", BigInteger, nullable=False),
)

customers = Table(
    "customers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant", String(64), ForeignKey("tenants.name"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("scopes", Text, nullable=False),  # space-separated
    Column("legal_entity_ids", Text, nullable=False),  # JSON list of strings
    Column("created_at", BigInteger, nullable=False),
    # False while a double opt-in sign-up waits for its link (migration 0006).
    Column("active", Boolean, nullable=False, server_default=true()),
    UniqueConstraint("tenant", "email"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("client_id", String(128), nullable=False),
    Column("customer_id", String(64), nullable=True),
    Column("legal_entity_id", String(128), nullable=True),
    Column("currency", String(16), nullable=True),
    Column("site_code", String(128), nullable=True),
    Column("language", String(64), nullable=True),
    Column("target_location", String(128), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # Indexed for the janitor, which deletes revoked sessions (migration 0002).
    Column("revoked_at", BigInteger, nullable=True, index=True),
    # A customer's sessions newest first, and a legal entity's sessions (migration 0008).
    Index("ix_sessions_customer_id_created_at", "customer_id", "created_at", "session_id"),
    Index("ix_sessions_tenant_legal_entity_id", "tenant", "legal_entity_id"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("use", String(16), nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("client_id", String(128), nullable=False),
    Column("session_id", String(128), nullable=True),
    Column("customer_id", String(64), nullable=True),
    Column("scope", Text, nullable=False),
    Column("legal_entity_id", String(128), nullable=True),
    Column("issued_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False, index=True),
    Column("revoked_at", BigInteger, nullable=True),
    Column("rotated_at", BigInteger, nullable=True),
    # A session's tokens, and whether any is live, from the index alone; also the expired
    # service tokens (session_id IS NULL) the janitor deletes (migration 0002).
    Index("ix_tokens_session_id_expires_at", "session_id", "expires_at"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    Column("private_key_encrypted", LargeBinary, nullable=False),
    Column("public_jwk", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("retired_at", BigInteger, nullable=True),
)

# Failed customer logins per account (server/abuse.py, migration 0003). `subject` is a keyed
# digest of the email, so unknown emails are counted too without storing what was typed.
login_failures = Table(
    "login_failures",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("subject", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failure_at", BigInteger, nullable=False, index=True),
    Column("locked_until", BigInteger, nullable=False),
)

# Facts about the database itself (server/startup.py, migration 0004): the secret's canary,
# and the row readiness rewrites to prove that writes succeed (SqlStore.ping).
service_meta = Table(
    "service_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# External OpenID providers a tenant trusts (server/identity_providers.py, migration 0007).
# Lists (algorithms, customer scopes) are space-separated. The client secret is kept as given:
# it must be sent to the provider's token endpoint.
identity_providers = Table(
    "identity_providers",
    metadata,
    Column("tenant", String(64), ForeignKey("tenants.name"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("issuer", String(2048), nullable=False),
    Column("jwks_uri", String(2048), nullable=False),
    Column("audience", String(2048), nullable=False),
    Column("customer_claim", String(64), nullable=False),
    Column("create_customers", Boolean, nullable=False),
    Column("customer_scopes", Text, nullable=False),
    Column("algorithms", String(255), nullable=False),
    Column("client_id", String(2048), nullable=False),
    Column("client_secret", Text, nullable=False),
    Column("token_endpoint", String(2048), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# Mailed one-time tokens: sign-up opt-in, password reset, e-mail change (server/accounts/,
# migration 0006). Only the keyed digest of a token is stored; a row is deleted when used.
account_links = Table(
    "account_links",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("purpose", String(16), nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("new_email", String(320), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False, index=True),
    # A customer's links of one purpose, replaced by a new one (save_account_link).
    Index("ix_account_links_customer_id_purpose", "customer_id", "purpose"),
)

# Each tenant's account rules (server/accounts/policy.py, migration 0006); no row: defaults.
account_policies = Table(
    "account_policies",
    metadata,
    Column("tenant", String(64), ForeignKey("tenants.name"), primary_key=True),
    Column("double_opt_in", Boolean, nullable=False),
    Column("password_min_length", Integer, nullable=False),
    Column("reject_common_passwords", Boolean, nullable=False),
)

# The revocation feed (server/revocation_feed.py, migration 0009): one row per committed
# revocation, written in the revoking transaction, read in `position` order by every replica
# and handed to resource servers (WatchRevocations). Lists are space-separated: fingerprints
# (unkeyed SHA-256, server/tokens.py) of tokens revoked alone, ids of sessions ended. Never a
# token. AUTOINCREMENT on SQLite, a sequence on PostgreSQL: a position is never handed out
# twice, even after the janitor deleted the rows before it.
revocation_events = Table(
    "revocation_events",
    metadata,
    Column(
        "position",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("tenant", String(64), nullable=False),
    Column("revoked_at", BigInteger, nullable=False, index=True),
    Column("fingerprints", Text, nullable=False),
    Column("sessions", Text, nullable=False),
    Column("everything", Boolean, nullable=False),
    sqlite_autoincrement=True,
)
