"""Records to table rows and back: the one place that knows how a record is stored (scopes as
a space-separated string, legal entities as JSON, enums by value)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from server.records import (
    AccountLink,
    AccountPolicy,
    ClientKind,
    ClientRecord,
    CustomerRecord,
    CustomerSession,
    IdentityProviderRecord,
    KeyStatus,
    LinkPurpose,
    LoginFailures,
    SessionContext,
    SessionRecord,
    SigningKeyRecord,
    TenantRecord,
    TokenKind,
    TokenRecord,
    TokenUse,
)


def tenant_row(t: TenantRecord) -> dict[str, Any]:
    return {**dataclasses.asdict(t), "allowed_origins": " ".join(t.allowed_origins)}


def login_failures(row: Any) -> LoginFailures | None:
    if row is None or row.failures <= 0:
        return None
    return LoginFailures(row.failures, row.last_failure_at, row.locked_until)


def tenant_record(r: Any) -> TenantRecord:
    return TenantRecord(r.name, r.created_at, tuple(r.allowed_origins.split()))


def client_row(c: ClientRecord) -> dict[str, Any]:
    row = dataclasses.asdict(c)
    row.update(kind=c.kind.value, scopes=" ".join(c.scopes))
    return row


def client_record(r: Any) -> ClientRecord:
    return ClientRecord(
        client_id=r.client_id,
        tenant=r.tenant,
        kind=ClientKind(r.kind),
        name=r.name,
        scopes=tuple(r.scopes.split()),
        secret_digest=r.secret_digest,
        created_at=r.created_at,
        access_token_ttl=r.access_token_ttl,
        refresh_token_ttl=r.refresh_token_ttl,
        refresh_rotation_disabled=bool(r.refresh_rotation_disabled),
    )


def customer_row(c: CustomerRecord) -> dict[str, Any]:
    row = dataclasses.asdict(c)
    row.update(
        email=c.email.lower(),
        scopes=" ".join(c.scopes),
        legal_entity_ids=json.dumps(list(c.legal_entity_ids)),
    )
    return row


def customer_record(r: Any) -> CustomerRecord:
    return CustomerRecord(
        id=r.id,
        tenant=r.tenant,
        email=r.email,
        password_hash=r.password_hash,
        scopes=tuple(r.scopes.split()),
        legal_entity_ids=tuple(json.loads(r.legal_entity_ids)),
        created_at=r.created_at,
        active=bool(r.active),
    )


def account_link_row(link: AccountLink) -> dict[str, Any]:
    return {**dataclasses.asdict(link), "purpose": link.purpose.value}


def account_link_record(r: Any) -> AccountLink:
    return AccountLink(
        digest=r.digest,
        purpose=LinkPurpose(r.purpose),
        tenant=r.tenant,
        customer_id=r.customer_id,
        created_at=r.created_at,
        expires_at=r.expires_at,
        new_email=r.new_email,
    )


def account_policy_row(policy: AccountPolicy) -> dict[str, Any]:
    return dataclasses.asdict(policy)


def account_policy_record(r: Any) -> AccountPolicy:
    return AccountPolicy(
        tenant=r.tenant,
        double_opt_in=bool(r.double_opt_in),
        password_min_length=int(r.password_min_length),
        reject_common_passwords=bool(r.reject_common_passwords),
    )


def session_row(s: SessionRecord) -> dict[str, Any]:
    # Spelled out: dataclasses.asdict, which recurses and deep-copies, cost a tenth of an
    # anonymous token's issue.
    return {
        "session_id": s.session_id,
        "tenant": s.tenant,
        "client_id": s.client_id,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "currency": s.context.currency,
        "site_code": s.context.site_code,
        "language": s.context.language,
        "target_location": s.context.target_location,
        "customer_id": s.customer_id,
        "legal_entity_id": s.legal_entity_id,
        "revoked_at": s.revoked_at,
    }


def session_record(r: Any) -> SessionRecord:
    return SessionRecord(
        session_id=r.session_id,
        tenant=r.tenant,
        client_id=r.client_id,
        created_at=r.created_at,
        updated_at=r.updated_at,
        context=SessionContext(r.currency, r.site_code, r.language, r.target_location),
        customer_id=r.customer_id,
        legal_entity_id=r.legal_entity_id,
        revoked_at=r.revoked_at,
    )


def customer_session(r: Any) -> CustomerSession:
    return CustomerSession(
        session_id=r.session_id,
        tenant=r.tenant,
        client_id=r.client_id,
        created_at=r.created_at,
        updated_at=r.updated_at,
        expires_at=r.expires_at,
        legal_entity_id=r.legal_entity_id,
    )


def token_row(t: TokenRecord) -> dict[str, Any]:
    return {
        "digest": t.digest,
        "kind": t.kind.value,
        "use": t.use.value,
        "tenant": t.tenant,
        "client_id": t.client_id,
        "session_id": t.session_id,
        "customer_id": t.customer_id,
        "scope": t.scope,
        "legal_entity_id": t.legal_entity_id,
        "issued_at": t.issued_at,
        "expires_at": t.expires_at,
        "revoked_at": t.revoked_at,
        "rotated_at": t.rotated_at,
    }


def token_record(r: Any) -> TokenRecord:
    return TokenRecord(
        digest=r.digest,
        kind=TokenKind(r.kind),
        use=TokenUse(r.use),
        tenant=r.tenant,
        client_id=r.client_id,
        scope=r.scope,
        issued_at=r.issued_at,
        expires_at=r.expires_at,
        session_id=r.session_id,
        customer_id=r.customer_id,
        legal_entity_id=r.legal_entity_id,
        revoked_at=r.revoked_at,
        rotated_at=r.rotated_at,
    )


def key_row(k: SigningKeyRecord) -> dict[str, Any]:
    row = dataclasses.asdict(k)
    row["status"] = k.status.value
    return row


def key_record(r: Any) -> SigningKeyRecord:
    return SigningKeyRecord(
        kid=r.kid,
        algorithm=r.algorithm,
        private_key_encrypted=bytes(r.private_key_encrypted),
        public_jwk=r.public_jwk,
        status=KeyStatus(r.status),
        created_at=r.created_at,
        retired_at=r.retired_at,
    )


def identity_provider_row(p: IdentityProviderRecord) -> dict[str, Any]:
    row = {field.name: getattr(p, field.name) for field in dataclasses.fields(p)}
    row.update(customer_scopes=" ".join(p.customer_scopes), algorithms=" ".join(p.algorithms))
    return row


def identity_provider_record(r: Any) -> IdentityProviderRecord:
    return IdentityProviderRecord(
        tenant=r.tenant,
        name=r.name,
        issuer=r.issuer,
        jwks_uri=r.jwks_uri,
        audience=r.audience,
        created_at=r.created_at,
        customer_claim=r.customer_claim,
        create_customers=bool(r.create_customers),
        customer_scopes=tuple(r.customer_scopes.split()),
        algorithms=tuple(r.algorithms.split()),
        client_id=r.client_id,
        client_secret=r.client_secret,
        token_endpoint=r.token_endpoint,
    )
