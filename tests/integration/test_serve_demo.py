"""`tokenservice serve` on a fresh embedded database provisions the demo tenant, prints a banner
that names it but none of its secrets, and a newcomer can then take every token kind through
grpcurl: the secrets come from `tokenservice demo env`, and the walk-through is anonymous login,
customer login, introspection, refresh, logout. A second start on the same database provisions
nothing and prints no banner.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import stat
import sys
from pathlib import Path
from typing import Any

from tests.support.processes import (
    cli,
    free_port,
    service_env,
    start_serve,
    stop_process,
    text_of,
    wait_until_serving,
)

GRPCURL = Path(sys.executable).parent / "grpcurl"
TOKEN_SERVICE = "tokenservice.v1.TokenService"
BANNER_MARKER = "demo-storefront"


# --- helpers ------------------------------------------------------------------------------------


async def grpcurl(target: str, method: str, data: dict[str, Any], cwd: Path) -> dict[str, Any]:
    """`grpcurl -plaintext -d JSON target method` (no proto file: reflection), parsed."""
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        "-plaintext",
        "-d",
        json.dumps(data),
        target,
        method,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, f"grpcurl {method} failed: {stderr.decode()}"
    answer: dict[str, Any] = json.loads(stdout)
    return answer


def exports(text: str) -> dict[str, str]:
    """The variables of `export NAME=value` lines, unquoted as a shell would."""
    variables: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        words = shlex.split(line)
        assert len(words) == 2 and words[0] == "export", f"not an export line: {line!r}"
        name, _, value = words[1].partition("=")
        variables[name] = value
    return variables


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def terminate(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), timeout=15)


# --- tests --------------------------------------------------------------------------------------


async def test_first_start_provisions_the_demo_and_grpcurl_walks_through_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.db"
    port = free_port()
    target = f"127.0.0.1:{port}"
    env = service_env(db, port, TOKENSERVICE_PROVISION_DEMO="true")
    first_logs = tmp_path / "first"
    first_logs.mkdir()

    process = await start_serve(env, first_logs)
    issued: list[str] = []
    try:
        await wait_until_serving(target, process, first_logs / "stderr.txt")
        banner = text_of(first_logs / "stdout.txt")
        assert BANNER_MARKER in banner, f"no demo banner on stdout:\n{banner}"

        # The secrets live only in <db>.demo.json, readable by its owner alone.
        demo_file = db.with_name(db.name + ".demo.json")
        assert demo_file.is_file()
        assert mode_of(demo_file) == 0o600, oct(mode_of(demo_file))
        demo = json.loads(demo_file.read_text())
        secret, password = demo["service_client_secret"], demo["customer_password"]
        assert secret and password

        # `tokenservice demo env` gives them to the newcomer as shell exports.
        variables = exports(await cli(env, "demo", "env"))
        assert variables["DEMO_SERVICE_CLIENT_SECRET"] == secret
        assert variables["DEMO_CUSTOMER_PASSWORD"] == password
        assert variables["DEMO_STOREFRONT_CLIENT_ID"] == BANNER_MARKER
        tenant = variables["DEMO_TENANT"]
        email = variables["DEMO_CUSTOMER_EMAIL"]

        issue = f"{TOKEN_SERVICE}/IssueToken"
        service = await grpcurl(
            target,
            issue,
            {
                "clientCredentials": {
                    "clientId": variables["DEMO_SERVICE_CLIENT_ID"],
                    "clientSecret": variables["DEMO_SERVICE_CLIENT_SECRET"],
                }
            },
            tmp_path,
        )
        assert service["kind"] == "TOKEN_KIND_SERVICE"
        assert service["access_token"]
        assert service["scope"].endswith(f"tenant={tenant}")
        issued.append(service["access_token"])

        anonymous = await grpcurl(
            target,
            issue,
            {"anonymous": {"tenant": tenant, "clientId": variables["DEMO_STOREFRONT_CLIENT_ID"]}},
            tmp_path,
        )
        assert anonymous["kind"] == "TOKEN_KIND_ANONYMOUS"
        issued += [anonymous["access_token"], anonymous["refresh_token"]]

        customer = await grpcurl(
            target,
            issue,
            {
                "customerPassword": {
                    "tenant": tenant,
                    "email": email,
                    "password": variables["DEMO_CUSTOMER_PASSWORD"],
                    "anonymousToken": anonymous["access_token"],
                }
            },
            tmp_path,
        )
        assert customer["kind"] == "TOKEN_KIND_CUSTOMER"
        assert customer["saas_token"].count(".") == 2
        assert customer["session_id"] == anonymous["session_id"]  # the session continues
        issued += [customer["access_token"], customer["refresh_token"], customer["saas_token"]]

        introspect = f"{TOKEN_SERVICE}/IntrospectToken"
        seen = await grpcurl(target, introspect, {"token": customer["access_token"]}, tmp_path)
        assert seen["active"] is True
        assert seen["kind"] == "TOKEN_KIND_CUSTOMER"
        assert seen["email"] == email
        assert seen["tenant"] == tenant
        assert seen["session_id"] == customer["session_id"]

        refreshed = await grpcurl(
            target,
            f"{TOKEN_SERVICE}/RefreshToken",
            {
                "tenant": tenant,
                "refreshToken": customer["refresh_token"],
                "accessToken": customer["access_token"],
            },
            tmp_path,
        )
        assert refreshed["session_id"] == customer["session_id"]
        assert refreshed["access_token"] != customer["access_token"]
        issued += [refreshed["access_token"], refreshed["refresh_token"]]
        fresh = await grpcurl(target, introspect, {"token": refreshed["access_token"]}, tmp_path)
        assert fresh["active"] is True
        assert fresh["kind"] == "TOKEN_KIND_CUSTOMER"

        revoked = await grpcurl(
            target,
            f"{TOKEN_SERVICE}/RevokeToken",
            {"token": refreshed["access_token"], "endSession": True},
            tmp_path,
        )
        assert revoked["revoked"] is True
        assert int(revoked["revoked_count"]) >= 2

        # Logout ended the session: every token of it is inactive (grpcurl omits false).
        for token in (
            refreshed["access_token"],
            refreshed["refresh_token"],
            anonymous["access_token"],
        ):
            gone = await grpcurl(target, introspect, {"token": token}, tmp_path)
            assert gone.get("active", False) is False, gone
            assert "kind" not in gone

        assert await terminate(process) == 0
    finally:
        await stop_process(process)

    # Nothing secret reached the output: not the demo secrets, not the server key, no token.
    output = text_of(first_logs / "stdout.txt") + text_of(first_logs / "stderr.txt")
    key_file = db.with_name(db.name + ".key")
    assert key_file.is_file()
    assert mode_of(key_file) == 0o600, oct(mode_of(key_file))
    for value in (secret, password, key_file.read_text().strip(), *issued):
        assert value not in output

    # A second start on the same database provisions nothing and prints no banner.
    port = free_port()
    env = service_env(db, port, TOKENSERVICE_PROVISION_DEMO="true")
    second_logs = tmp_path / "second"
    second_logs.mkdir()
    process = await start_serve(env, second_logs)
    try:
        await wait_until_serving(f"127.0.0.1:{port}", process, second_logs / "stderr.txt")
        assert await terminate(process) == 0
    finally:
        await stop_process(process)
    output = text_of(second_logs / "stdout.txt") + text_of(second_logs / "stderr.txt")
    assert BANNER_MARKER not in output
    assert json.loads(demo_file.read_text()) == demo  # the credentials were not replaced


async def test_banner_commands_work_when_pasted(tmp_path: Path) -> None:
    """The banner's shell commands, run as printed from the directory it names (the server's
    working directory), go through every step (anonymous, service, customer, introspect,
    refresh, revoke) without an error, wherever the service's virtual environment is."""
    db = tmp_path / "t.db"
    port = free_port()
    env = service_env(db, port, TOKENSERVICE_PROVISION_DEMO="true")
    process = await start_serve(env, tmp_path)
    try:
        await wait_until_serving(f"127.0.0.1:{port}", process, tmp_path / "stderr.txt")
        banner = text_of(tmp_path / "stdout.txt").splitlines()
        start = next(i for i, line in enumerate(banner) if "demo env" in line)
        commands = [line[2:] for line in banner[start:] if line.startswith("  ")]
        script = "\n".join(["set -euo pipefail", *commands])
        shell = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            script,
            cwd=Path.cwd(),  # the server's, which the banner names
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(shell.communicate(), timeout=60)
        out, err = stdout.decode(), stderr.decode()
        assert shell.returncode == 0, f"the banner's commands failed:\n{script}\n{out}\n{err}"
        assert "TOKEN_KIND_CUSTOMER" in out
        assert '"revoked": true' in out
        assert await terminate(process) == 0
    finally:
        await stop_process(process)
