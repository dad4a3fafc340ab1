"""The demo tenant `make run` provisions on first start with an empty embedded database.

Its secrets (the service client's secret and the customer's password) go only to a credentials
file beside the database (`<db>.demo.json`, mode 0600). The banner printed on start-up says
where they are and how to load them (`tokenservice demo env`), never what they are.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from server import admin
from server.core import Core
from server.errors import AlreadyExists, NotFound
from server.records import ClientKind
from server.settings import Settings
from server.store.sqlite_file import sqlite_file as sqlite_file_path

TENANT = "demo"
STOREFRONT_CLIENT_ID = "demo-storefront"
SERVICE_CLIENT_ID = "demo-service"
SERVICE_SCOPES = ("tokenservice.admin", "catalog.read", "catalog.write")
CUSTOMER_EMAIL = "demo@example.com"
CUSTOMER_SCOPES = ("customer.read", "customer.write")
LEGAL_ENTITY_IDS = ("le-demo-1", "le-demo-2")
PASSWORD_BYTES = 15  # 20 URL-safe characters
TOKEN_SERVICE = "tokenservice.v1.TokenService"  # noqa: S105 - a service name
_SHELL_VARIABLE = re.compile(r'"\$([A-Z_]+)"')
# close the single quotes, splice in "$NAME", reopen them: "'"$NAME"'"
_SPLICE = '"\'"$\\1"\'"'


@dataclasses.dataclass(frozen=True)
class DemoCredentials:
    """What the demo tenant's users need; the secrets are left out of repr, so out of logs."""

    path: Path
    tenant: str
    storefront_client_id: str
    service_client_id: str
    service_client_secret: str = dataclasses.field(repr=False)
    customer_email: str
    customer_password: str = dataclasses.field(repr=False)

    def env(self) -> dict[str, str]:
        """The `DEMO_*` shell variables `tokenservice demo env` exports."""
        return {
            "DEMO_TENANT": self.tenant,
            "DEMO_STOREFRONT_CLIENT_ID": self.storefront_client_id,
            "DEMO_SERVICE_CLIENT_ID": self.service_client_id,
            "DEMO_SERVICE_CLIENT_SECRET": self.service_client_secret,
            "DEMO_CUSTOMER_EMAIL": self.customer_email,
            "DEMO_CUSTOMER_PASSWORD": self.customer_password,
        }


def credentials_path(settings: Settings) -> Path | None:
    """`<sqlite db path>.demo.json`, or None when the database is not a SQLite file."""
    db_path = sqlite_file_path(settings.database_url)
    return db_path.with_name(db_path.name + ".demo.json") if db_path is not None else None


async def provision_demo(core: Core) -> DemoCredentials | None:
    """Provisions the demo tenant when the store has no tenant yet; None when it did nothing
    (disabled, not a SQLite file database, or tenants already exist)."""
    path = credentials_path(core.settings)
    if not core.settings.provision_demo or path is None or await core.store.list_tenants():
        return None
    try:
        await admin.create_tenant(core, TENANT)
    except AlreadyExists:
        return None  # another process provisioned it first
    await admin.create_client(
        core,
        TENANT,
        ClientKind.STOREFRONT,
        (),
        name="Demo storefront",
        client_id=STOREFRONT_CLIENT_ID,
    )
    _, secret = await admin.create_client(
        core,
        TENANT,
        ClientKind.SERVICE,
        SERVICE_SCOPES,
        name="Demo back end",
        client_id=SERVICE_CLIENT_ID,
    )
    assert secret is not None
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    await admin.create_customer(
        core, TENANT, CUSTOMER_EMAIL, password, CUSTOMER_SCOPES, LEGAL_ENTITY_IDS
    )
    credentials = DemoCredentials(
        path=path,
        tenant=TENANT,
        storefront_client_id=STOREFRONT_CLIENT_ID,
        service_client_id=SERVICE_CLIENT_ID,
        service_client_secret=secret,
        customer_email=CUSTOMER_EMAIL,
        customer_password=password,
    )
    _write_private(path, json.dumps(_to_json(credentials), indent=2) + "\n")
    return credentials


def load_credentials(settings: Settings) -> DemoCredentials:
    """The demo credentials written on first start, or NotFound."""
    path = credentials_path(settings)
    if path is None or not path.is_file():
        where = str(path) if path is not None else "(not a SQLite file database)"
        raise NotFound(
            f"no demo credentials at {where}: they are written when `make run` first starts "
            "on an empty database"
        )
    data = json.loads(path.read_text())
    return DemoCredentials(
        path=path,
        tenant=data["tenant"],
        storefront_client_id=data["storefront_client_id"],
        service_client_id=data["service_client_id"],
        service_client_secret=data["service_client_secret"],
        customer_email=data["customer_email"],
        customer_password=data["customer_password"],
    )


def env_lines(credentials: DemoCredentials) -> str:
    """`export DEMO_...=...` lines, shell-quoted, for `eval "$(tokenservice demo env)"`."""
    return "".join(
        f"export {name}={shlex.quote(value)}\n" for name, value in credentials.env().items()
    )


def demo_banner(creds: DemoCredentials, grpc_addr: str, http_addr: str = "") -> str:
    """What `make run` prints after provisioning: who exists, where the secrets are, and
    grpcurl (and curl) commands to paste. Never the secrets themselves."""
    addr = client_address(grpc_addr)
    http_lines = []
    if http_addr:
        url = f"http://{client_address(http_addr)}"
        query = f"tenant={creds.tenant}&client_id={creds.storefront_client_id}"
        http_lines = [
            "  # 7. the same over HTTP (every route: README, section HTTP endpoints)",
            f"  curl -s '{url}/customerlogin/auth/anonymous/login?{query}'",
            f'  curl -s -u "{creds.service_client_id}:$DEMO_SERVICE_CLIENT_SECRET" '
            f"-d grant_type=client_credentials {url}/oauth/token",
        ]

    grpcurl_command = tool("grpcurl")

    def grpcurl(payload: Mapping[str, object], method: str) -> str:
        data = _shell_json(payload)
        return f"{grpcurl_command} -plaintext -d {data} {addr} {TOKEN_SERVICE}/{method}"

    anonymous = {"anonymous": {"tenant": creds.tenant, "clientId": creds.storefront_client_id}}
    service = {
        "clientCredentials": {
            "clientId": creds.service_client_id,
            "clientSecret": "$DEMO_SERVICE_CLIENT_SECRET",
        }
    }
    customer = {
        "customerPassword": {
            "tenant": creds.tenant,
            "email": creds.customer_email,
            "password": "$DEMO_CUSTOMER_PASSWORD",
            "anonymousToken": "$ANON_TOKEN",
        }
    }
    refresh = {
        "tenant": creds.tenant,
        "refreshToken": "$CUSTOMER_REFRESH",
        "accessToken": "$CUSTOMER_TOKEN",  # a customer refresh needs one of its session
    }
    revoke = {"token": "$CUSTOMER_TOKEN", "endSession": True}
    return "\n".join(
        [
            "",
            "Demo tenant provisioned (first start on an empty database):",
            f"  tenant             {creds.tenant}",
            f"  storefront client  {creds.storefront_client_id}  (anonymous and customer tokens)",
            f"  service client     {creds.service_client_id}  (client_credentials; scopes: "
            f"{' '.join(SERVICE_SCOPES)})",
            f"  customer           {creds.customer_email}  (legal entities: "
            f"{' '.join(LEGAL_ENTITY_IDS)})",
            f"  secrets            {creds.path}  (mode 0600; not printed here)",
            "",
            f"In another shell, from {shlex.quote(str(Path.cwd()))}, load them as DEMO_* "
            "variables:",
            f'  eval "$({tool("tokenservice")} demo env)"',
            "",
            "Then try it (grpcurl uses server reflection: no proto file needed):",
            f"  {grpcurl_command} -plaintext {addr} list",
            f"  field() {{ {tool(Path(sys.executable).name)} -c "
            "'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' \"$1\"; }",
            "  # 1. an anonymous token (a storefront visitor)",
            f'  ANON=$({grpcurl(anonymous, "IssueToken")}); echo "$ANON"',
            '  ANON_TOKEN=$(echo "$ANON" | field access_token)',
            "  # 2. a service token (client_credentials)",
            f"  {grpcurl(service, 'IssueToken')}",
            "  # 3. a customer token, continuing the anonymous session",
            f'  CUSTOMER=$({grpcurl(customer, "IssueToken")}); echo "$CUSTOMER"',
            '  CUSTOMER_TOKEN=$(echo "$CUSTOMER" | field access_token)',
            '  CUSTOMER_REFRESH=$(echo "$CUSTOMER" | field refresh_token)',
            "  # 4. introspect it",
            f"  {grpcurl({'token': '$CUSTOMER_TOKEN'}, 'IntrospectToken')}",
            "  # 5. refresh it with its access token (same session id, new access token)",
            f"  {grpcurl(refresh, 'RefreshToken')}",
            "  # 6. revoke it and end the session (logout)",
            f"  {grpcurl(revoke, 'RevokeToken')}",
            *http_lines,
            "",
        ]
    )


def tool(name: str) -> str:
    """How the banner's reader runs `name` (grpcurl, tokenservice, python): the one installed
    beside the running interpreter (the .venv `make run` made, or wherever the service was
    installed), relative to the working directory when it lies inside it, or else its absolute
    path; the bare name, found on PATH, when there is none beside it."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        return name
    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return shlex.quote(shown if "/" in shown else f"./{shown}")


def _shell_json(payload: Mapping[str, object]) -> str:
    """`payload` as one single-quoted shell word; string values `$NAME` are spliced in from
    shell variables when the command runs."""
    text = json.dumps(payload)
    return "'" + _SHELL_VARIABLE.sub(_SPLICE, text) + "'"


def client_address(grpc_addr: str) -> str:
    """Where a local client connects to a server listening on `grpc_addr` (wildcards become
    localhost)."""
    host, _, port = grpc_addr.rpartition(":")
    if host in {"", "0.0.0.0", "[::]", "::"}:  # noqa: S104 - recognising, not binding
        host = "localhost"
    return f"{host}:{port}"


def _to_json(credentials: DemoCredentials) -> dict[str, str]:
    return {
        "tenant": credentials.tenant,
        "storefront_client_id": credentials.storefront_client_id,
        "service_client_id": credentials.service_client_id,
        "service_client_secret": credentials.service_client_secret,
        "customer_email": credentials.customer_email,
        "customer_password": credentials.customer_password,
    }


def _write_private(path: Path, text: str) -> None:
    """Writes `text` to a new file only its owner can read (a stale one is replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
