"""The `tokenservice` command: serve, migrate, provision tenants, clients, customers and
signing keys, list and end customers' sessions, and delete expired tokens (janitor).

Provisioning works directly on the database named by TOKENSERVICE_DATABASE_URL (migrating it
first), so it works before any server runs and beside a running one. `--json` prints one JSON
object for scripts. Expected failures print `error: <what is wrong>` and exit 2, never a
traceback.

This module is the parser, the dispatch and the two serving commands. The provisioning commands
live in launcher/provisioning.py and are imported only when one of them runs, and the exceptions
of modules a command may not load (SQLAlchemy's, the secret key's) are recognised only once one
arrives: `tokenservice bridge` loads none of the store (tests/project/test_package_graph.py).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from launcher import event_loop
from server import janitor
from server.errors import TokenServiceError
from server.settings import ConfigError, Settings

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace, Settings], int]


# A signing key's kid: its RFC 7638 thumbprint, 43 characters of unpadded base64url.
KID_SHAPE = re.compile(r"-[A-Za-z0-9_-]{42}")


def kids_as_values(argv: Sequence[str]) -> list[str]:
    """`argv` with every kid that starts with "-" (one kid in 64) moved after a `--`, where
    argparse takes it as the value it is rather than as an unknown option (or, starting with
    "-h", as the request for help). No option of the command has that shape, and no other
    value may, so only kids move; an argv that has its own `--` is left as it is."""
    if "--" in argv:
        return list(argv)
    kids = [arg for arg in argv if KID_SHAPE.fullmatch(arg)]
    if not kids:
        return list(argv)
    return [arg for arg in argv if arg not in kids] + ["--", *kids]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the exit status."""
    args = build_parser().parse_args(kids_as_values(sys.argv[1:] if argv is None else argv))
    try:
        settings = Settings.from_env()
        handler: Handler = args.handler
        return handler(args, settings)
    except TokenServiceError as exc:
        return _fail(exc.description)
    except ConfigError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(str(exc))  # an unwritable key file, a busy port, ...
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        message = expected_failure(exc)
        if message is None:
            raise
        return _fail(message)


def expected_failure(exc: Exception) -> str | None:
    """The one-line message for a failure the command expects (a bad secret key, an invalid
    database URL, a missing database driver); None for anything else. The modules defining
    these are imported here, once a failure arrives, not when the command starts."""
    from sqlalchemy.exc import ArgumentError

    from launcher.provisioning import DatabaseDriverMissing
    from server.secret_key import SecretKeyError

    if isinstance(exc, ArgumentError):
        return "TOKENSERVICE_DATABASE_URL is not a valid database URL"
    if isinstance(exc, SecretKeyError | DatabaseDriverMissing):
        return str(exc)
    return None


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
    _add_identity_providers(commands)
    _add_legal_entity(commands)
    _add_keys(commands)
    _add_demo(commands)
    _add_janitor(commands)
    _add_mail(commands)
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
    _command(
        group,
        "upgrade",
        "apply the schema migrations (idempotent)",
        provisioning_command("cmd_db_upgrade"),
    )


def _add_tenant(commands: Any) -> None:
    group = _group(commands, "tenant", "tenants")
    create = _command(
        group,
        "create",
        "create a tenant",
        provisioning_command("cmd_tenant_create"),
        json_output=True,
    )
    create.add_argument("name", metavar="NAME", help="3-16 lowercase letters or digits")
    _command(
        group, "list", "list the tenants", provisioning_command("cmd_tenant_list"), json_output=True
    )
    show = _command(
        group, "show", "show a tenant", provisioning_command("cmd_tenant_show"), json_output=True
    )
    show.add_argument("name", metavar="NAME")
    origins = _command(
        group,
        "set-origins",
        "replace the browser origins allowed to call the tenant's storefront endpoints (CORS)",
        provisioning_command("cmd_tenant_set_origins"),
        json_output=True,
    )
    origins.add_argument("name", metavar="NAME")
    origins.add_argument(
        "origins",
        nargs="*",
        metavar="ORIGIN",
        help="scheme://host[:port], e.g. https://shop.example (none: clear the list)",
    )
    policy = _command(
        group,
        "account-policy",
        "show, or change, the tenant's account rules: double opt-in at sign-up, password policy",
        provisioning_command("cmd_tenant_account_policy"),
        json_output=True,
    )
    policy.add_argument("name", metavar="NAME")
    policy.add_argument(
        "--double-opt-in",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sign-up waits for a mailed link before the account can log in",
    )
    policy.add_argument(
        "--password-min-length", type=int, metavar="N", help="shortest new password (6-128)"
    )
    policy.add_argument(
        "--reject-common-passwords",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="refuse the most common passwords as new passwords",
    )


def _add_client(commands: Any) -> None:
    group = _group(commands, "client", "storefront and service clients")
    create = _command(
        group,
        "create",
        "create a client (a service client's secret is printed this once)",
        provisioning_command("cmd_client_create"),
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
    listing = _command(
        group,
        "list",
        "list a tenant's clients",
        provisioning_command("cmd_client_list"),
        json_output=True,
    )
    listing.add_argument("--tenant", required=True)


def _add_customer(commands: Any) -> None:
    group = _group(commands, "customer", "customers")
    create = _command(
        group,
        "create",
        "create a customer",
        provisioning_command("cmd_customer_create"),
        json_output=True,
    )
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
    _add_customer_sessions(group)


def _add_customer_sessions(group: Any) -> None:
    listing = _command(
        group,
        "sessions",
        "list a customer's active sessions, newest first",
        provisioning_command("cmd_customer_sessions"),
        json_output=True,
    )
    _customer_named(listing)
    listing.add_argument("--page-size", type=int, default=0, metavar="N", help="default: all")
    listing.add_argument("--page-token", default="", help="from the previous page")
    end_one = _command(
        group,
        "end-session",
        "end one active session of a customer (revoking every token of it)",
        provisioning_command("cmd_customer_end_session"),
        json_output=True,
    )
    _customer_named(end_one)
    end_one.add_argument("session_id", metavar="SESSION_ID")
    end_all = _command(
        group,
        "end-sessions",
        "end every session of a customer (log out everywhere)",
        provisioning_command("cmd_customer_end_sessions"),
        json_output=True,
    )
    _customer_named(end_all)
    end_all.add_argument(
        "--except", dest="except_session", default="", metavar="SESSION_ID", help="keep this one"
    )


def _customer_named(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True)
    named = parser.add_mutually_exclusive_group(required=True)
    named.add_argument("--email")
    named.add_argument("--id", dest="customer_id", metavar="CUSTOMER_ID")


def _add_legal_entity(commands: Any) -> None:
    group = _group(commands, "legal-entity", "legal entities")
    end_all = _command(
        group,
        "end-sessions",
        "end every session whose current legal entity is this one",
        provisioning_command("cmd_legal_entity_end_sessions"),
        json_output=True,
    )
    end_all.add_argument("--tenant", required=True)
    end_all.add_argument("legal_entity_id", metavar="LEGAL_ENTITY_ID")


def _add_identity_providers(commands: Any) -> None:
    group = _group(commands, "idp", "external identity providers (token exchange, social login)")
    put = _command(
        group,
        "put",
        "trust an OpenID provider for a tenant, or replace the one of that name",
        provisioning_command("cmd_idp_put"),
        json_output=True,
    )
    put.add_argument("--tenant", required=True)
    put.add_argument(
        "--name", default="default", help="the reference's `config` (default: default)"
    )
    put.add_argument("--issuer", default="", help="its exact `iss` (or from --discovery-url)")
    put.add_argument("--jwks-uri", default="", help="https (or from --discovery-url)")
    put.add_argument("--audience", required=True, help="the `aud` a token to exchange carries")
    put.add_argument(
        "--customer-claim", default="email", help="the claim holding the customer's e-mail"
    )
    put.add_argument(
        "--create-customers",
        action="store_true",
        help="a verified identity without an account creates a customer",
    )
    put.add_argument("--customer-scopes", default="", help="space-separated, for new customers")
    put.add_argument("--algorithms", default="", help="space-separated (default: RS256 ES256)")
    put.add_argument("--client-id", default="", help="social login: this service's client id")
    put.add_argument(
        "--client-secret-file",
        default="",
        metavar="PATH",
        help="social login: a file holding the client secret (first line)",
    )
    put.add_argument("--token-endpoint", default="", help="social login (or from --discovery-url)")
    put.add_argument(
        "--discovery-url",
        default="",
        help="read issuer, JWKS URI and token endpoint once from this OpenID discovery document",
    )
    listing = _command(
        group,
        "list",
        "the tenant's identity providers (never their client secrets)",
        provisioning_command("cmd_idp_list"),
        json_output=True,
    )
    listing.add_argument("--tenant", required=True)
    delete = _command(
        group,
        "delete",
        "stop trusting an identity provider",
        provisioning_command("cmd_idp_delete"),
        json_output=True,
    )
    delete.add_argument("--tenant", required=True)
    delete.add_argument("--name", default="default")


def _add_keys(commands: Any) -> None:
    group = _group(commands, "keys", "SaaS token signing keys")
    _command(
        group,
        "rotate",
        "make a new key the active one",
        provisioning_command("cmd_keys_rotate"),
        json_output=True,
    )
    _command(
        group,
        "list",
        "list the signing keys",
        provisioning_command("cmd_keys_list"),
        json_output=True,
    )
    retire = _command(
        group,
        "retire",
        "retire a verifying key",
        provisioning_command("cmd_keys_retire"),
        json_output=True,
    )
    retire.add_argument("kid", metavar="KID")


def _add_demo(commands: Any) -> None:
    group = _group(commands, "demo", "the demo tenant `make run` provisions")
    _command(
        group,
        "env",
        'print the demo credentials as shell exports: eval "$(tokenservice demo env)"',
        provisioning_command("cmd_demo_env"),
    )


def _add_mail(commands: Any) -> None:
    group = _group(commands, "mail", "the embedded outbox: account mail written as files")
    _command(
        group,
        "list",
        "list the messages in the outbox, oldest first",
        provisioning_command("cmd_mail_list"),
        json_output=True,
    )
    show = _command(
        group,
        "show",
        "print one message of the outbox (it holds a one-time token: keep it private)",
        provisioning_command("cmd_mail_show"),
        json_output=True,
    )
    show.add_argument("id", metavar="ID", help="as `mail list` prints it")


def _add_janitor(commands: Any) -> None:
    sweep = _command(
        commands,
        "janitor",
        "delete expired tokens and dead sessions once (`serve` also does it periodically)",
        provisioning_command("cmd_janitor"),
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
    from launcher import workers

    if args.worker_index is not None:
        event_loop.run(workers.run_worker(settings, args.worker_index), settings.event_loop)
        return 0
    count = settings.workers if args.workers is None else args.workers
    event_loop.check(settings.event_loop)  # before any worker starts: the supervisor is on asyncio
    try:
        workers.check_can_run(settings, count)
    except workers.CannotRunWorkers as exc:
        return _fail(str(exc))
    if count == 1:
        from launcher.serve import serve

        event_loop.run(serve(settings), settings.event_loop)
        return 0
    return asyncio.run(workers.supervise(settings, count))


def cmd_bridge(args: argparse.Namespace, settings: Settings) -> int:
    from launcher.standalone_bridge import run_bridge

    if args.http_addr:
        settings = dataclasses.replace(settings, http_addr=args.http_addr)
    event_loop.run(run_bridge(settings, args.grpc_target), settings.event_loop)
    return 0


def provisioning_command(name: str) -> Handler:
    """The command `name` of launcher/provisioning.py, imported only when it runs."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        from launcher import provisioning

        handler: Handler = getattr(provisioning, name)
        return handler(args, settings)

    run.__qualname__ = run.__name__ = name
    return run


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR
