"""Token exchange and social login against a `tokenservice serve` process at DEBUG level, the
provider configured with the real CLI (`tokenservice idp put`, the client secret from a file),
and tests/support/local_idp.py as the provider: a flood of invented kids costs the provider at
most one JWKS fetch per interval; a provider that misbehaves is a 503 every time, never a 5xx
stack trace. Every external token, code, verifier and the client secret goes into the ledger,
so test_zz_nothing_leaks proves none of them reached a log line, an error or /metrics."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx

from tests.reliability.support import LEDGER, Service, provision, reliability_env
from tests.support.http_clients import async_http_client
from tests.support.local_idp import LocalIdp, new_key, pkce_pair
from tests.support.ports import free_port
from tests.support.processes import cli

REDIRECT = "https://shop.example/callback"
FORGED_KIDS = 50


async def test_external_tokens_leak_nowhere_and_forged_kids_cost_one_fetch(
    tmp_path: Path,
) -> None:
    env = reliability_env(
        tmp_path / "tokens.db",
        TOKENSERVICE_IDP_ALLOW_HTTP_LOOPBACK="true",
        TOKENSERVICE_LOG_LEVEL="DEBUG",
    )
    shop = await provision(env, "idpshop")
    service = Service(env, tmp_path / "logs")
    with LocalIdp() as idp:
        LEDGER.secret(idp.client_secret)
        secret_file = tmp_path / "client-secret"
        secret_file.write_text(idp.client_secret + "\n", encoding="utf-8")
        common = ["--tenant", shop.tenant, "--issuer", idp.issuer, "--audience", idp.audience]
        await cli(
            env,
            "idp",
            "put",
            *common,
            "--jwks-uri",
            idp.jwks_uri,
            "--create-customers",
            "--customer-scopes",
            "customer.read",
            "--client-id",
            idp.client_id,
            "--client-secret-file",
            str(secret_file),
            "--token-endpoint",
            idp.token_endpoint,
        )
        gone = f"http://127.0.0.1:{free_port()}/jwks"  # nobody listens there
        await cli(env, "idp", "put", *common, "--name", "gone", "--jwks-uri", gone)
        listed = await cli(env, "idp", "list", "--tenant", shop.tenant, "--json")
        providers = json.loads(listed)["providers"]
        assert [p["name"] for p in providers] == ["default", "gone"]
        assert providers[0]["has_client_secret"] and idp.client_secret not in listed
        try:
            await service.start()
            async with async_http_client(base_url=service.http_base, timeout=30) as http:
                await _social_logins(http, shop.tenant, shop.storefront_id, idp)
                await _exchanges(http, shop.tenant, shop.storefront_id, shop.email, idp)
            await service.stop()
        finally:
            await service.close()
        deleted = await cli(
            env, "idp", "delete", "--tenant", shop.tenant, "--name", "gone", "--json"
        )
        assert json.loads(deleted) == {"deleted": True}


async def _anonymous(http: httpx.AsyncClient, tenant: str, client_id: str) -> dict[str, str]:
    answer = await http.get(
        "/customerlogin/auth/anonymous/login", params={"tenant": tenant, "client_id": client_id}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, str] = answer.json()
    LEDGER.secret(body["access_token"], body["refresh_token"])
    return body


async def _exchange(
    http: httpx.AsyncClient, tenant: str, client_id: str, token: str, **query: str
) -> httpx.Response:
    bearer = (await _anonymous(http, tenant, client_id))["access_token"]
    answer = await http.post(
        f"/customer/{tenant}/exchangeauthtoken",
        params={"subjectAccessToken": token, **query},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    if answer.status_code == 200:
        body = answer.json()
        LEDGER.secret(body["access_token"], body["refresh_token"], body["saas_token"])
    else:
        LEDGER.error_text(f"exchangeauthtoken HTTP {answer.status_code}", answer.text)
    assert answer.status_code < 500 or answer.status_code == 503, answer.text
    return answer


async def _exchanges(
    http: httpx.AsyncClient, tenant: str, client_id: str, email: str, idp: LocalIdp
) -> None:
    good = idp.token(email)
    LEDGER.secret(good)
    assert (await _exchange(http, tenant, client_id, good)).status_code == 200
    fetched = idp.requests["GET /jwks"]
    assert fetched == 1  # the social logins before fetched it: the same provider, cached

    # Tokens with invented kids: refused, and at most one fetch for all of them.
    for _ in range(FORGED_KIDS):
        forged = idp.token(email, key=new_key())
        LEDGER.secret(forged)
        answer = await _exchange(http, tenant, client_id, forged)
        assert answer.status_code == 400 and "kid" in answer.json()["message"]
    assert idp.requests["GET /jwks"] <= fetched + 1

    refused = [
        idp.token(email, aud="someone-else"),
        idp.token(email, lifetime=-3600),
        idp.token(email, headers={"crit": ["b64"], "b64": False}),
        idp.token("stranger@elsewhere.example", iss="https://evil.example"),
    ]
    for token in refused:
        LEDGER.secret(token)
        assert (await _exchange(http, tenant, client_id, token)).status_code == 400

    # The provider that is not there, and one that misbehaves: 503, every time.
    for _ in range(3):
        answer = await _exchange(http, tenant, client_id, good, config="gone")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    idp.rotate(keep_old=False)  # its keys are unknown now: every mode below is fetched
    for mode in ("huge", "redirect", "error", "garbage"):
        idp.jwks_mode = mode
        fresh = idp.token(email)
        LEDGER.secret(fresh)
        # Within the refetch interval the unknown kid is refused without a fetch (400), after
        # it a fetch fails (503): either way no 5xx but 503.
        answer = await _exchange(http, tenant, client_id, fresh)
        assert answer.status_code in (400, 503), answer.text
    idp.jwks_mode = "ok"


async def _social_logins(
    http: httpx.AsyncClient, tenant: str, client_id: str, idp: LocalIdp
) -> None:
    for attempt in range(3):
        verifier, _ = pkce_pair()
        nonce = secrets.token_urlsafe(12)
        code = idp.authorization_code(f"social{attempt}@idpshop.example", REDIRECT, verifier, nonce)
        LEDGER.secret(code, verifier, nonce)
        bearer = (await _anonymous(http, tenant, client_id))["access_token"]
        query = {"code": code, "redirect_uri": REDIRECT, "code_verifier": verifier, "nonce": nonce}
        for expected in (200, 400):  # the second redemption of the code is refused
            answer = await http.post(
                f"/customer/{tenant}/socialLogin",
                params=query,
                headers={"Authorization": f"Bearer {bearer}"},
            )
            assert answer.status_code == expected, answer.text
            body = answer.json()
            if expected == 200:
                LEDGER.secret(
                    body["access_token"],
                    body["refresh_token"],
                    body["saas_token"],
                    body["social_access_token"],
                    body["social_id_token"],
                )
            else:
                LEDGER.error_text("socialLogin HTTP 400", answer.text)
