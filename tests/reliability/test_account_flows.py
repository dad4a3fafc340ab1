"""Account flows against a real `tokenservice serve` (SQLite, DEBUG logging, the outbox folder):
sign-up with double opt-in, password reset, e-mail change and password change, with refusals
between them. Every e-mail address, password and mailed token goes into the ledger, and every
refusal's body, so that the leak check (test_zz_nothing_leaks.py) proves none of them reaches a
log line, an error or a metric."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import httpx

from server import admin
from server.mail import outbox
from server.settings import Settings
from server.startup import open_core
from tests.reliability.support import LEDGER, Service, provision, reliability_env
from tests.support.http_clients import async_http_client
from tests.support.mail import token_in

WAIT_SECONDS = 30


async def next_message(folder: Path, seen: int) -> outbox.StoredMessage:
    """The message after the first `seen` ones, once the service has written it."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        messages = outbox.list_messages(folder)
        if len(messages) > seen:
            message = messages[seen]
            LEDGER.secret(token_in(message.body))
            return message
        assert time.monotonic() < deadline, "no mail arrived in the outbox"
        await asyncio.sleep(0.05)


async def refused(http: httpx.AsyncClient, where: str, response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, response.text
    LEDGER.error_text(where, response.text)


async def test_account_flows_leave_no_email_password_or_link_token_behind(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "outbox"
    env = reliability_env(
        tmp_path / "tokens.db",
        TOKENSERVICE_LOG_LEVEL="DEBUG",
        TOKENSERVICE_MAIL_OUTBOX_DIR=str(folder),
        TOKENSERVICE_ACCOUNT_LINK_BASE_URL="https://shop.example/{tenant}",
    )
    shop = await provision(env, "accounts")
    core = await open_core(Settings.from_env(env))
    try:
        await admin.set_account_policy(core, shop.tenant, double_opt_in=True)
    finally:
        await core.store.close()
    email, new_email = "leaky.signup@accounts.example", "leaky.new@accounts.example"
    password, reset_password, changed_password = (secrets.token_urlsafe(15) for _ in range(3))
    LEDGER.secret(email, new_email, password, reset_password, changed_password)
    service = Service(env, tmp_path / "logs")
    try:
        await service.start()
        async with async_http_client(base_url=service.http_base, timeout=30) as http:
            base = f"/customer/{shop.tenant}"

            async def anonymous() -> dict[str, str]:
                login = await http.get(
                    "/customerlogin/auth/anonymous/login",
                    params={"tenant": shop.tenant, "client_id": shop.storefront_id},
                )
                LEDGER.secret(login.json()["access_token"], login.json()["refresh_token"])
                return {"Authorization": f"Bearer {login.json()['access_token']}"}

            bearer = await anonymous()
            signup = {"email": email, "password": password}
            assert (
                await http.post(f"{base}/signup", json=signup, headers=bearer)
            ).status_code == 201
            await refused(
                http,
                "sign-up again",
                await http.post(f"{base}/signup", json=signup, headers=bearer),
            )
            weak = {"email": "weak@accounts.example", "password": "password123"}
            await refused(
                http, "weak sign-up", await http.post(f"{base}/signup", json=weak, headers=bearer)
            )
            login = {"email": email, "password": password}
            await refused(
                http,
                "login unconfirmed",
                await http.post(f"{base}/login", json=login, headers=bearer),
            )
            optin = token_in((await next_message(folder, 0)).body)
            await refused(
                http,
                "opt-in wrong",
                await http.get(f"{base}/signup/optin/{optin[::-1]}", headers=bearer),
            )
            confirmed = await http.get(f"{base}/signup/optin/{optin}", headers=bearer)
            assert confirmed.status_code == 200, confirmed.text
            customer = confirmed.json()
            LEDGER.secret(
                customer["access_token"], customer["refresh_token"], customer["saas_token"]
            )
            await refused(
                http,
                "opt-in reused",
                await http.get(f"{base}/signup/optin/{optin}", headers=bearer),
            )

            reset = await http.post(f"{base}/password/reset", json={"email": email}, headers=bearer)
            assert reset.status_code == 204
            reset_token = token_in((await next_message(folder, 1)).body)
            update = {"token": reset_token, "password": reset_password}
            ok = await http.post(f"{base}/password/reset/update", json=update, headers=bearer)
            assert ok.status_code == 204, ok.text
            await refused(
                http,
                "reset reused",
                await http.post(f"{base}/password/reset/update", json=update, headers=bearer),
            )

            bearer = await anonymous()  # the reset ended the session the opt-in logged in
            fresh = await http.post(
                f"{base}/login", json={"email": email, "password": reset_password}, headers=bearer
            )
            assert fresh.status_code == 200, fresh.text
            LEDGER.secret(
                fresh.json()["access_token"],
                fresh.json()["refresh_token"],
                fresh.json()["saas_token"],
            )
            customer_bearer = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
            wrong = {"currentPassword": password, "newPassword": changed_password}
            await refused(
                http,
                "change wrong",
                await http.post(f"{base}/password/change", json=wrong, headers=customer_bearer),
            )
            change = {"currentPassword": reset_password, "newPassword": changed_password}
            done = await http.post(f"{base}/password/change", json=change, headers=customer_bearer)
            assert done.status_code == 204, done.text

            path = f"{base}/me/accounts/internal/email/change"
            ask = {"email": email, "password": changed_password, "newEmail": new_email}
            assert (await http.post(path, json=ask, headers=customer_bearer)).status_code == 204
            change_token = token_in((await next_message(folder, 2)).body)
            await refused(
                http,
                "confirm wrong",
                await http.post(
                    f"{path}/confirm", json={"token": change_token[:-1]}, headers=bearer
                ),
            )
            confirm = await http.post(
                f"{path}/confirm", json={"token": change_token}, headers=bearer
            )
            assert confirm.status_code == 204, confirm.text
            await refused(
                http,
                "old email",
                await http.post(
                    f"{base}/login",
                    json={"email": email, "password": changed_password},
                    headers=bearer,
                ),
            )
        await service.stop()
    finally:
        await service.close()
