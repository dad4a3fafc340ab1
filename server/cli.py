"""The `tokenservice` command: serve, migrate, provision tenants, clients, customers and
signing keys, and delete expired tokens (janitor).

Provisioning works directly on the database named by TOKENSERVICE_DATABASE_URL (migrating it
first), so it works before any server runs and beside a running one. `--json` prints one JSON
object for scripts. Expected failures print `error: <what is wrong>` and exit 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from server import admin, demo, janitor
from server.core import Core
from server.errors import TokenServiceError
from server.records import (
    ClientRecord,
    CustomerRecord,
    SigningKeyRecord,
    TenantRecord,
)
from server.secret_key import SecretKeyError
from server.settings import Settings

T = TypeVar("T")
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace, Settings], int]


class DatabaseDriverMissing(RuntimeError):
    """TOKENSERVICE_DATABASE_URL names a database whose driver is not installed."""


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        handler: Handler = args.handler
        return handler(args, settings)
    except (TokenServiceError, SecretKeyError) as exc:
        return _fail(exc.description if isinstance(exc, TokenServiceError) else str(exc))
    except ArgumentError:
        return _fail("TOKENSERVICE_DATABASE_URL is not a valid database URL")
    except (DatabaseDriverMissing, OSError) as exc:
        return _fail(str(exc))  # a missing driver, an unwritable key file, a busy port, ...
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenservice",
        description="Token service: serve gRPC and HTTP, and provision the database named by "
        "TOKENSERVICE_DATABASE_URL.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = _command(
        commands,
        "serve",
        "serve gRPC and the HTTP bridge until SIGTERM or SIGINT",
        cmd_serve,
    )
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes serving the same ports (default: TOKENSERVICE_WORKERS or 1); more "
        "than one needs PostgreSQL",
    )
    # Internal: how `--workers N` starts its workers (no migrations, no demo, shared ports).
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    bridge = _command(
        commands,
        "bridge",
        "serve only the HTTP bridge, in front of a remote gRPC TokenService",
        cmd_bridge,
    )
    bridge.add_argument("--grpc-target", required=True, metavar="HOST:PORT")
    bridge.add_argument(
        "--http-addr", metavar="HOST:PORT", help="default: TOKENSERVICE_HTTP_ADDR or 0.0.0.0:8080"
    )
    _add_db(commands)
    _add_tenant(commands)
    _add_client(commands)
    _add_customer(commands)
    _add_keys(commands)
    _add_demo(commands)
    _add_janitor(commands)
    return parser


# --- parser ---------------------------------------------------------------------------------


def _command(
    group: Any, name: str, help_text: str, handler: Handler, *, json_output: bool = False
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    if json_output:
        parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _group(commands: Any, name: str, help_text: str) -> Any:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def _add_db(commands: Any) -> None:
    group = _group(commands, "db", "database schema")
    _command(group, "upgrade", "apply the schema migrations (idempotent)", cmd_db_upgrade)


def _add_tenant(commands: Any) -> None:
    group = _group(commands, "tenant", "tenants")
    create = _command(group, "create", "create a tenant", cmd_tenant_create, json_output=True)
    create.add_argument("name", metavar="NAME", help="3-16 lowercase letters or digits")
    _command(group, "list", "list the tenants", cmd_tenant_list, json_output=True)
    show = _command(group, "show", "show a tenant", cmd_tenant_show, json_output=True)
    show.add_argument("name", metavar="NAME")
    origins = _command(
        group,
        "set-origins",
        "replace the browser origins allowed to call the tenant's storefront endpoints (CORS)",
        cmd_tenant_set_origins,
        json_output=True,
    )
    origins.add_argument("name", metavar="NAME")
    origins.add_argument(
        "origins",
        nargs="*",
        metavar="ORIGIN",
        help="scheme://host[:port], e.g. https://shop.example (none: clear the list)",
    )


def _add_client(commands: Any) -> None:
    group = _group(commands, "client", "storefront and service clients")
    create = _command(
        group,
        "create",
        "create a client (a service client's secret is printed this once)",
        cmd_client_create,
        json_output=True,
    )
    create.add_argument("--tenant", required=True)
    create.add_argument("--kind", required=True, choices=["storefront", "service"])
    create.add_argument("--scopes", default="", help='space-separated, e.g. "a.read a.write"')
    create.add_argument("--name", default="")
    create.add_argument("--client-id", default="", help="default: 24 random URL-safe chars")
    create.add_argument("--access-ttl", type=int, metavar="SECONDS", help="access token lifetime")
    create.add_argument(
        "--refresh-ttl", type=int, metavar="SECONDS", help="refresh token lifetime (storefront)"
    )
    create.add_argument(
        "--no-refresh-rotation",
        action="store_true",
        help="keep the first refresh token valid (legacy storefront clients)",
    )
    listing = _command(group, "list", "list a tenant's clients", cmd_client_list, json_output=True)
    listing.add_argument("--tenant", required=True)


def _add_customer(commands: Any) -> None:
    group = _group(commands, "customer", "customers")
    create = _command(group, "create", "create a customer", cmd_customer_create, json_output=True)
    create.add_argument("--tenant", required=True)
    create.add_argument("--email", required=True)
    create.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the password from the first line of standard input",
    )
    create.add_argument(
        "--scopes",
        default="",
        help="space-separated (not the service's admin scopes: those are for service clients)",
    )
    create.add_argument(
        "--legal-entity",
        dest="legal_entities",
        action="extend",
        nargs="+",
        default=[],
        metavar="ID",
        help="one or more legal entity ids (repeatable)",
    )


def _add_keys(commands: Any) -> None:
    group = _group(commands, "keys", "SaaS token signing keys")
    _command(group, "rotate", "make a new key the active one", cmd_keys_rotate, json_output=True)
    _command(group, "list", "list the signing keys", cmd_keys_list, json_output=True)
    retire = _command(group, "retire", "retire a verifying key", cmd_keys_retire, json_output=True)
    retire.add_argument("kid", metavar="KID")


def _add_demo(commands: Any) -> None:
    group = _group(commands, "demo", "the demo tenant `make run` provisions")
    _command(
        group,
        "env",
        'print the demo credentials as shell exports: eval "$(tokenservice demo env)"',
        cmd_demo_env,
    )


def _add_janitor(commands: Any) -> None:
    sweep = _command(
        commands,
        "janitor",
        "delete expired tokens and dead sessions once (`serve` also does it periodically)",
        cmd_janitor,
        json_output=True,
    )
    sweep.add_argument(
        "--batch-size",
        type=int,
        default=janitor.DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"sessions or tokens per transaction (default {janitor.DEFAULT_BATCH_SIZE})",
    )


# --- commands -------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from server import workers

    if args.worker_index is not None:
        asyncio.run(workers.run_worker(settings, args.worker_index))
        return 0
    count = settings.workers if args.workers is None else args.workers
    try:
        workers.check_can_run(settings, count)
    except workers.CannotRunWorkers as exc:
        return _fail(str(exc))
    if count == 1:
        from server.app import serve

        asyncio.run(serve(settings))
        return 0
    return asyncio.run(workers.supervise(settings, count))


def cmd_bridge(args: argparse.Namespace, settings: Settings) -> int:
    from http_bridge.standalone import run_bridge

    if args.http_addr:
        settings = dataclasses.replace(settings, http_addr=args.http_addr)
    asyncio.run(run_bridge(settings, args.grpc_target))
    return 0


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
        await core.store.close()


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


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


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
