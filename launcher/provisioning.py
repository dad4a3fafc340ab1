"""The provisioning commands of `tokenservice` (db, tenant, client, customer and its sessions,
legal-entity sessions, idp, keys, janitor, demo env): each opens the database named by
TOKENSERVICE_DATABASE_URL as `serve` does (migrating it first), runs one operation of
server/admin.py, server/identity_provider_admin.py, server/customer_sessions.py or
server/janitor.py, and prints
the result, or one JSON object with `--json` (`demo env` only reads the demo credentials file).
Apart from launcher/cli.py, which imports this module only when one of these commands runs, so
that `tokenservice bridge` and `serve` do not load what only provisioning needs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchModuleError

from launcher import demo
from server import admin, customer_sessions, identity_provider_admin, janitor
from server.core import Core
from server.records import (
    AccountPolicy,
    ClientRecord,
    CustomerRecord,
    CustomerSession,
    IdentityProviderRecord,
    SigningKeyRecord,
    TenantRecord,
)
from server.settings import Settings

T = TypeVar("T")


class DatabaseDriverMissing(RuntimeError):
    """TOKENSERVICE_DATABASE_URL names a database whose driver is not installed."""


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from server.store.migrate import upgrade

    url = settings.database_url
    with _database_driver():
        asyncio.run(upgrade(url, busy_timeout_ms=settings.sqlite_busy_timeout_ms))
    print(f"database is at the newest schema: {make_url(url).render_as_string()}")
    return 0


def cmd_tenant_create(args: argparse.Namespace, settings: Settings) -> int:
    tenant = _with_core(settings, lambda core: admin.create_tenant(core, args.name))
    return _emit(args, tenant_json(tenant), f"created tenant {tenant.name}")


def cmd_tenant_list(args: argparse.Namespace, settings: Settings) -> int:
    tenants = _with_core(settings, admin.list_tenants)
    lines = [tenant.name for tenant in tenants]
    return _emit(args, {"tenants": [tenant_json(tenant) for tenant in tenants]}, *lines)


def cmd_tenant_show(args: argparse.Namespace, settings: Settings) -> int:
    tenant = _with_core(settings, lambda core: admin.get_tenant(core, args.name))
    return _emit(args, tenant_json(tenant), *tenant_lines(tenant))


def cmd_tenant_set_origins(args: argparse.Namespace, settings: Settings) -> int:
    tenant = _with_core(
        settings, lambda core: admin.set_allowed_origins(core, args.name, args.origins)
    )
    return _emit(args, tenant_json(tenant), *tenant_lines(tenant))


def cmd_tenant_account_policy(args: argparse.Namespace, settings: Settings) -> int:
    changes = (args.double_opt_in, args.password_min_length, args.reject_common_passwords)
    if all(change is None for change in changes):
        policy = _with_core(settings, lambda core: admin.get_account_policy(core, args.name))
    else:
        policy = _with_core(
            settings,
            lambda core: admin.set_account_policy(
                core,
                args.name,
                double_opt_in=args.double_opt_in,
                password_min_length=args.password_min_length,
                reject_common_passwords=args.reject_common_passwords,
            ),
        )
    result = {
        "tenant": policy.tenant,
        "double_opt_in": policy.double_opt_in,
        "password_min_length": policy.password_min_length,
        "reject_common_passwords": policy.reject_common_passwords,
    }
    return _emit(args, result, *account_policy_lines(policy))


def account_policy_lines(policy: AccountPolicy) -> list[str]:
    return [
        policy.tenant,
        f"double opt-in: {'on' if policy.double_opt_in else 'off'}",
        f"password minimum length: {policy.password_min_length}",
        f"reject common passwords: {'on' if policy.reject_common_passwords else 'off'}",
    ]


def cmd_mail_list(args: argparse.Namespace, settings: Settings) -> int:
    """Reads the outbox folder only: no database is opened."""
    from server.mail import outbox

    messages = outbox.list_messages(outbox.outbox_dir(settings))
    listed = [{"id": m.id, "to": m.to, "subject": m.subject, "kind": m.kind} for m in messages]
    lines = [f"{m.id}  {m.kind}  {m.to}  {m.subject}" for m in messages]
    return _emit(args, {"messages": listed}, *(lines or ["the outbox is empty"]))


def cmd_mail_show(args: argparse.Namespace, settings: Settings) -> int:
    from server.mail import outbox

    message = outbox.find_message(outbox.outbox_dir(settings), args.id)
    if message is None:
        print(f"error: no message '{args.id}' in the outbox", file=sys.stderr)
        return 1
    result = {
        "id": message.id,
        "to": message.to,
        "subject": message.subject,
        "kind": message.kind,
        "body": message.body,
    }
    lines = [f"To: {message.to}", f"Subject: {message.subject}", "", message.body]
    return _emit(args, result, *lines)


def tenant_lines(tenant: TenantRecord) -> list[str]:
    return [tenant.name, f"allowed origins: {' '.join(tenant.allowed_origins) or '-'}"]


def cmd_client_create(args: argparse.Namespace, settings: Settings) -> int:
    client, secret = _with_core(
        settings,
        lambda core: admin.create_client(
            core,
            args.tenant,
            admin.client_kind(args.kind),
            args.scopes.split(),
            name=args.name,
            client_id=args.client_id,
            access_token_ttl=args.access_ttl,
            refresh_token_ttl=args.refresh_ttl,
            refresh_rotation_disabled=args.no_refresh_rotation,
        ),
    )
    result = client_json(client)
    lines = [f"created {client.kind} client {client.client_id} in tenant {client.tenant}"]
    if secret is not None:
        result["client_secret"] = secret
        lines.append(f"client_secret: {secret}")
        lines.append("(shown only this once: only a keyed digest of it is stored)")
    return _emit(args, result, *lines)


def cmd_client_list(args: argparse.Namespace, settings: Settings) -> int:
    clients = _with_core(settings, lambda core: admin.list_clients(core, args.tenant))
    lines = [
        f"{c.client_id}  {c.kind}  {' '.join(c.scopes) or '-'}  {c.name}".rstrip() for c in clients
    ]
    return _emit(args, {"clients": [client_json(client) for client in clients]}, *lines)


def cmd_customer_create(args: argparse.Namespace, settings: Settings) -> int:
    password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    customer = _with_core(
        settings,
        lambda core: admin.create_customer(
            core,
            args.tenant,
            args.email,
            password,
            args.scopes.split(),
            args.legal_entities,
        ),
    )
    line = f"created customer {customer.email} ({customer.id}) in tenant {customer.tenant}"
    return _emit(args, customer_json(customer), line)


def cmd_idp_put(args: argparse.Namespace, settings: Settings) -> int:
    secret = ""
    if args.client_secret_file:
        with open(args.client_secret_file, encoding="utf-8") as file:
            secret = file.readline().removesuffix("\n").removesuffix("\r")
    draft = IdentityProviderRecord(
        tenant=args.tenant,
        name=args.name,
        issuer=args.issuer,
        jwks_uri=args.jwks_uri,
        audience=args.audience,
        created_at=0,
        customer_claim=args.customer_claim,
        create_customers=args.create_customers,
        customer_scopes=tuple(args.customer_scopes.split()),
        algorithms=tuple(args.algorithms.split()),
        client_id=args.client_id,
        client_secret=secret,
        token_endpoint=args.token_endpoint,
    )
    record = _with_core(
        settings,
        lambda core: identity_provider_admin.put_identity_provider(
            core, draft, discovery_url=args.discovery_url
        ),
    )
    line = f"tenant {record.tenant} trusts identity provider {record.name} ({record.issuer})"
    return _emit(args, identity_provider_json(record), line)


def cmd_idp_list(args: argparse.Namespace, settings: Settings) -> int:
    found = _with_core(
        settings, lambda core: identity_provider_admin.list_identity_providers(core, args.tenant)
    )
    lines = [f"{p.name}  {p.issuer}  {p.audience}  {p.customer_claim}" for p in found]
    return _emit(args, {"providers": [identity_provider_json(p) for p in found]}, *lines)


def cmd_idp_delete(args: argparse.Namespace, settings: Settings) -> int:
    deleted = _with_core(
        settings,
        lambda core: identity_provider_admin.delete_identity_provider(core, args.tenant, args.name),
    )
    line = f"deleted identity provider {args.name}" if deleted else "no such identity provider"
    return _emit(args, {"deleted": deleted}, line)


def cmd_customer_sessions(args: argparse.Namespace, settings: Settings) -> int:
    """One page with --page-size; without, every page (each one read as the service would)."""

    async def listing(core: Core) -> tuple[list[CustomerSession], str]:
        found: list[CustomerSession] = []
        token = args.page_token
        while True:
            page = await customer_sessions.list_of_customer(
                core,
                args.tenant,
                email=args.email or "",
                customer_id=args.customer_id or "",
                page_size=args.page_size,
                page_token=token,
            )
            found.extend(page.sessions)
            token = page.next_page_token
            if not token or args.page_size:
                return found, token

    found, next_token = _with_core(settings, listing)
    result: dict[str, Any] = {"sessions": [session_json(s) for s in found]}
    lines = [
        f"{s.session_id}  created {s.created_at}  refreshed {s.updated_at}  expires "
        f"{s.expires_at}  {s.legal_entity_id or '-'}"
        for s in found
    ]
    if next_token:
        result["next_page_token"] = next_token
        lines.append(f"next page: --page-token {next_token}")
    return _emit(args, result, *(lines or ["no active sessions"]))


def cmd_customer_end_session(args: argparse.Namespace, settings: Settings) -> int:
    _with_core(
        settings,
        lambda core: customer_sessions.end_of_customer(
            core,
            args.tenant,
            args.session_id,
            email=args.email or "",
            customer_id=args.customer_id or "",
        ),
    )
    return _emit(args, {"ended_sessions": 1}, f"ended session {args.session_id}")


def cmd_customer_end_sessions(args: argparse.Namespace, settings: Settings) -> int:
    ended = _with_core(
        settings,
        lambda core: customer_sessions.end_all_of_customer(
            core,
            args.tenant,
            email=args.email or "",
            customer_id=args.customer_id or "",
            except_session_id=args.except_session,
        ),
    )
    return _emit(args, {"ended_sessions": ended}, f"ended {ended} sessions")


def cmd_legal_entity_end_sessions(args: argparse.Namespace, settings: Settings) -> int:
    ended = _with_core(
        settings,
        lambda core: customer_sessions.end_all_of_legal_entity(
            core, args.tenant, args.legal_entity_id
        ),
    )
    return _emit(args, {"ended_sessions": ended}, f"ended {ended} sessions")


def cmd_keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    key = _with_core(settings, admin.rotate_signing_key)
    delay = settings.signing_key_activation_seconds
    return _emit(
        args,
        signing_key_json(key),
        f"new active signing key {key.kid}: published in the JWKS now, signing in {delay} s",
    )


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    keys = _with_core(settings, admin.list_signing_keys)
    lines = [f"{key.kid}  {key.algorithm}  {key.status}" for key in keys]
    return _emit(args, {"keys": [signing_key_json(key) for key in keys]}, *lines)


def cmd_keys_retire(args: argparse.Namespace, settings: Settings) -> int:
    key = _with_core(settings, lambda core: admin.retire_signing_key(core, args.kid))
    return _emit(args, signing_key_json(key), f"retired signing key {key.kid}")


def cmd_janitor(args: argparse.Namespace, settings: Settings) -> int:
    report = _with_core(settings, lambda core: janitor.sweep(core, batch_size=args.batch_size))
    result = {"tokens_removed": report.tokens_removed, "sessions_removed": report.sessions_removed}
    line = f"removed {report.tokens_removed} tokens and {report.sessions_removed} sessions"
    return _emit(args, result, line)


def cmd_demo_env(args: argparse.Namespace, settings: Settings) -> int:
    sys.stdout.write(demo.env_lines(demo.load_credentials(settings)))
    return 0


# --- plumbing -------------------------------------------------------------------------------


def _with_core(settings: Settings, operation: Callable[[Core], Awaitable[T]]) -> T:
    """Opens (and migrates) the store as `serve` does, refusing a secret that is not the
    database's (server/startup.py), runs `operation` on a core over it, closes the store."""
    return asyncio.run(_run(settings, operation))


async def _run(settings: Settings, operation: Callable[[Core], Awaitable[T]]) -> T:
    from server.startup import open_core

    with _database_driver():
        core = await open_core(settings)
    try:
        return await operation(core)
    finally:
        await core.close()


@contextlib.contextmanager
def _database_driver() -> Iterator[None]:
    """Turns a missing database driver into a one-line error."""
    try:
        yield
    except (ModuleNotFoundError, NoSuchModuleError) as exc:
        raise DatabaseDriverMissing(
            f"the database driver for TOKENSERVICE_DATABASE_URL is not installed ({exc})"
        ) from None


def _emit(args: argparse.Namespace, result: dict[str, Any], *lines: str) -> int:
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for line in lines:
            print(line)
    return 0


def tenant_json(record: TenantRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "created_at": record.created_at,
        "allowed_origins": list(record.allowed_origins),
    }


def client_json(record: ClientRecord) -> dict[str, Any]:
    """Everything but the secret digest."""
    return {
        "client_id": record.client_id,
        "tenant": record.tenant,
        "kind": str(record.kind),
        "name": record.name,
        "scopes": list(record.scopes),
        "access_token_ttl": record.access_token_ttl,
        "refresh_token_ttl": record.refresh_token_ttl,
        "refresh_rotation_disabled": record.refresh_rotation_disabled,
        "created_at": record.created_at,
    }


def customer_json(record: CustomerRecord) -> dict[str, Any]:
    """Everything but the password hash."""
    return {
        "id": record.id,
        "tenant": record.tenant,
        "email": record.email,
        "scopes": list(record.scopes),
        "legal_entity_ids": list(record.legal_entity_ids),
        "created_at": record.created_at,
    }


def session_json(record: CustomerSession) -> dict[str, Any]:
    """What is safe to show: no token, no digest."""
    return {
        "session_id": record.session_id,
        "client_id": record.client_id,
        "created_at": record.created_at,
        "last_refreshed_at": record.updated_at,
        "expires_at": record.expires_at,
        "legal_entity_id": record.legal_entity_id,
    }


def signing_key_json(record: SigningKeyRecord) -> dict[str, Any]:
    """The public half only."""
    return {
        "kid": record.kid,
        "algorithm": record.algorithm,
        "status": str(record.status),
        "created_at": record.created_at,
        "retired_at": record.retired_at,
        "public_jwk": json.loads(record.public_jwk),
    }


def identity_provider_json(record: IdentityProviderRecord) -> dict[str, Any]:
    """Everything but the client secret."""
    return {
        "tenant": record.tenant,
        "name": record.name,
        "issuer": record.issuer,
        "jwks_uri": record.jwks_uri,
        "audience": record.audience,
        "customer_claim": record.customer_claim,
        "create_customers": record.create_customers,
        "customer_scopes": list(record.customer_scopes),
        "algorithms": list(record.algorithms),
        "client_id": record.client_id,
        "has_client_secret": bool(record.client_secret),
        "token_endpoint": record.token_endpoint,
        "created_at": record.created_at,
    }
