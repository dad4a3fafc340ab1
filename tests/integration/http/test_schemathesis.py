"""schemathesis against the live bridge (uvicorn on port 0, in-process backend, real SQLite).

Two bounded runs, both checking that nothing answers 5xx and that every response conforms to
`http_bridge/openapi.json` (status code documented, content type, required headers, body schema):

- the `schemathesis run` CLI, in a subprocess, over every operation: examples, coverage
  (boundary values, missing and duplicated parameters, wrong types, undocumented methods, which
  must answer 405 with `Allow`) and fuzzing, with the provisioned tenant, client ids, service
  secret and live tokens offered as dictionaries so that many requests get past validation; it
  also checks that requests breaking the document's constraints are refused with a 4xx, so the
  document states no constraint the bridge does not enforce;
- schemathesis' Python API, case by case, with fresh real bearer tokens, refresh tokens and
  credentials put into most cases, so the storefront operations answer 2xx too.

Each run prints how many cases it tried. SEED fixes the generated data; change it to explore.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import http_bridge
from server import admin
from server.mail import outbox
from tests.integration.http.conftest import Bridge
from tests.support.harness import Shop
from tests.support.local_idp import LocalIdp, pkce_pair
from tests.support.mail import token_in

DOCUMENT_PATH = Path(http_bridge.__file__).parent / "openapi.json"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
SEED = 20240611
CLI_MAX_EXAMPLES = 40  # per operation, fuzzing phase; coverage adds its own fixed set
API_MAX_EXAMPLES = 30  # per operation
# The account operations' real data costs several requests and argon2 hashes per case (a fresh
# customer signed up and confirmed): fewer cases there keep the run within its timeout.
ACCOUNT_MAX_EXAMPLES = 8
ACCOUNT_PATHS = (
    "/customer/{tenant}/signup",
    "/customer/{tenant}/password",
    "/customer/{tenant}/me",
)
# Operations whose success is an event stream that does not end: a blocking client given real
# credentials would wait on it for ever. Here they get generated cases without credentials
# (their refusals checked like any other's); their 200 is checked by test_openapi_document,
# which reads the stream's first event.
ENDLESS = {"GET /oauth/revocations"}
CLI_TIMEOUT = 100  # seconds; the run takes a few
CLI_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "negative_data_rejection",
)
API_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
Tally = collections.Counter[tuple[str, int]]
# schemathesis' generics, with the parameters left open as schemathesis itself returns them
# (get_all_operations yields bare APIOperations, as_strategy bare Cases).
Operation: TypeAlias = schemathesis.APIOperation[Any, Any, Any, Any]
OperationCase: TypeAlias = schemathesis.Case[Operation]
ACCOUNT_PASSWORD = "a long and unusual passphrase"
CHANGED_PASSWORD = "another long passphrase"
MAIL_WAIT_SECONDS = 30


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """The account-request throttles off: the runs send hundreds of sign-ups and resets from
    one address (the throttle has tests of its own)."""
    return {"account_requests_per_email": 0, "account_requests_per_address": 0}


@pytest.mark.parametrize("bridge", ["in_process"], indirect=True)
@pytest.mark.slow  # hundreds of generated requests; make test-fast leaves it out
async def test_schemathesis_cli_finds_no_server_error_and_no_drift(
    bridge: Bridge, tmp_path: Path
) -> None:
    assert SCHEMATHESIS.exists(), f"the schemathesis CLI is a dev dependency: {SCHEMATHESIS}"
    shop = await bridge.harness.shop("fuzz")
    config = tmp_path / "schemathesis.toml"
    config.write_text(await cli_config(bridge, shop), encoding="utf-8")
    har = tmp_path / "interactions.har.json"
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        str(DOCUMENT_PATH),
        "--url",
        bridge.base_url,
        "--checks",
        ",".join(CLI_CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(CLI_MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "har",
        "--report-har-path",
        str(har),
    ]
    # The bridge runs in this event loop: wait for the CLI without blocking it.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=tmp_path,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode("utf-8", "replace")
    assert process.returncode == 0, text[-12000:]

    generated = re.search(r"(\d+) generated", text)
    assert generated is not None, text[-4000:]
    statuses = har_statuses(har)
    print(
        f"\nschemathesis CLI (seed {SEED}): {generated.group(1)} cases, "
        f"{statuses.total()} requests, by status: {dict(sorted(by_status(statuses).items()))}"
    )
    documented = labels_of(schemathesis.openapi.from_path(DOCUMENT_PATH))
    assert documented <= {label for label, _ in statuses}
    assert by_status(statuses)[200] > 0
    assert by_status(statuses)[405] > 0  # undocumented methods were tried


@pytest.mark.parametrize("bridge", ["in_process"], indirect=True)
@pytest.mark.slow  # hundreds of generated requests; make test-fast leaves it out
async def test_schemathesis_cases_with_real_credentials_conform(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("cases")
    # With a double opt-in, a sign-up mails a link whose confirm logs the new customer in: how
    # the account operations get fresh customers (the shop's own keeps its password).
    await admin.set_account_policy(bridge.harness.core, shop.tenant, double_opt_in=True)
    schema = schemathesis.openapi.from_path(DOCUMENT_PATH)
    folder = Path(bridge.harness.core.settings.mail_outbox_dir)
    with LocalIdp() as idp:  # the tenant's identity provider, for the two routes that need one
        await bridge.harness.core.store.put_identity_provider(idp.record(shop.tenant))
        # The checks make blocking requests: run them off the loop that serves the bridge.
        tally = await asyncio.to_thread(run_cases, schema, bridge.base_url, shop, folder, idp)

    print(
        f"\nschemathesis Python API: {tally.total()} cases, "
        f"by status: {dict(sorted(by_status(tally).items()))}"
    )
    labels = labels_of(schema)
    assert {label for label, _ in tally} == labels
    without_success = sorted(
        label
        for label in labels - ENDLESS
        if not any(seen == label and s < 300 for seen, s in tally)
    )
    assert without_success == [], "real credentials must get some cases of each through"


# ------------------------------------------------------------------ the CLI run


async def cli_config(bridge: Bridge, shop: Shop) -> str:
    """A schemathesis.toml offering real values: each bound parameter takes one of them with the
    given probability and is generated otherwise."""
    harness = bridge.harness
    anonymous = [await harness.anonymous(shop) for _ in range(4)]
    customers = [await harness.customer(shop) for _ in range(3)]
    service = await harness.service(shop)
    access = [t.access_token for t in (*anonymous, *customers, service)]
    dictionaries = {
        "tenant": [shop.tenant],
        "storefront": [shop.storefront_id],
        "client": [shop.storefront_id, shop.service_id],
        "service": [shop.service_id],
        "secret": [shop.service_secret],
        "email": [shop.email],
        "password": [shop.password],
        "anonymous_refresh": [t.refresh_token for t in anonymous],
        "anonymous_access": [t.access_token for t in anonymous],
        "customer_refresh": [t.refresh_token for t in customers],
        "legal_entity": list(shop.legal_entities),
        "access": access,
        "token": [*access, *(t.refresh_token for t in (*anonymous, *customers))],
    }
    lines = ["[phases.coverage]", "generate-duplicate-query-parameters = true", ""]
    for name, values in dictionaries.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]

    def bindings(pairs: dict[str, tuple[str, float]]) -> str:
        items = (
            f'"{key}" = {{ dictionary = "{name}", probability = {probability} }}'
            for key, (name, probability) in pairs.items()
        )
        return "\n".join(items)

    lines += [
        "[parameters]",
        bindings(
            {
                "path.tenant": ("tenant", 0.6),
                "query.tenant": ("tenant", 0.6),
                "query.client_id": ("storefront", 0.6),
                "query.refresh_token": ("anonymous_refresh", 0.5),
                "query.anonymous_token": ("anonymous_access", 0.3),
                "query.refreshToken": ("customer_refresh", 0.5),
                "query.legalEntityId": ("legal_entity", 0.5),
                "query.accessToken": ("access", 0.3),
            }
        ),
        "",
    ]
    per_operation = {
        "POST /oauth/token": {
            "body.client_id": ("service", 0.7),
            "body.client_secret": ("secret", 0.7),
        },
        "POST /oauth2/token": {
            "body.client_id": ("service", 0.7),
            "body.client_secret": ("secret", 0.7),
        },
        "POST /oauth/introspect": {
            "body.client_id": ("client", 0.7),
            "body.client_secret": ("secret", 0.4),
            "body.token": ("token", 0.6),
        },
        "POST /oauth/revoke": {
            "body.client_id": ("client", 0.7),
            "body.client_secret": ("secret", 0.4),
            "body.token": ("token", 0.6),
        },
        "POST /customer/{tenant}/login": {
            "body.email": ("email", 0.6),
            "body.password": ("password", 0.6),
        },
    }
    for name, pairs in per_operation.items():
        lines += ["[[operations]]", f"include-name = {json.dumps(name)}", "[operations.parameters]"]
        lines += [bindings(pairs), ""]
    return "\n".join(lines)


def har_statuses(path: Path) -> Tally:
    """(operation label, status) of every request the CLI sent, from its HAR report."""
    entries = json.loads(path.read_text(encoding="utf-8"))["log"]["entries"]
    tally: Tally = collections.Counter()
    for entry in entries:
        request_path = "/" + entry["request"]["url"].split("/", 3)[3].split("?", 1)[0]
        template = re.sub(r"^/customer/[^/]*/", "/customer/{tenant}/", request_path)
        template = re.sub(
            r"^(/customer/\{tenant\}/me/sessions)/[^/]*$", r"\1/{sessionId}", template
        )
        optin = re.fullmatch(r"(/customer/\{tenant\}/signup/optin/)([^/]+)", template)
        method = entry["request"]["method"]
        if optin and (optin.group(2) != "refresh_token" or method == "GET"):
            template = optin.group(1) + "{token}"
        tally[(f"{entry['request']['method']} {template}", entry["response"]["status"])] += 1
    return tally


def by_status(tally: Tally) -> collections.Counter[int]:
    result: collections.Counter[int] = collections.Counter()
    for (_, status), count in tally.items():
        result[status] += count
    return result


# ------------------------------------------------------------------ the Python API run


def operations(schema: schemathesis.BaseSchema) -> list[Operation]:
    found: list[Operation] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the document has an invalid operation: {result.err()}"
        found.append(result.ok())
    return found


def labels_of(schema: schemathesis.BaseSchema) -> set[str]:
    return {f"{operation.method.upper()} {operation.path}" for operation in operations(schema)}


def run_cases(
    schema: schemathesis.BaseSchema, base_url: str, shop: Shop, outbox_dir: Path, idp: LocalIdp
) -> Tally:
    tally: Tally = collections.Counter()
    with requests.Session() as session:
        real = RealData(session, base_url, shop, outbox_dir, idp)
        for operation in operations(schema):
            exercise(operation, base_url, session, real, tally)
    return tally


def exercise(
    operation: Operation,
    base_url: str,
    session: requests.Session,
    real: RealData,
    tally: Tally,
) -> None:
    label = f"{operation.method.upper()} {operation.path}"
    account = operation.path.startswith(ACCOUNT_PATHS)

    @hypothesis.settings(
        max_examples=ACCOUNT_MAX_EXAMPLES if account else API_MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(), data=st.data())
    def run(case: OperationCase, data: st.DataObject) -> None:
        if data.draw(st.integers(0, 9), label="real data") < 8:
            real.provision(case, data.draw)
        response = case.call(base_url=base_url, session=session)
        tally[(label, response.status_code)] += 1
        case.validate_response(response, checks=API_CHECKS)

    run()


Draw = Callable[..., Any]


class RealData:
    """Puts the provisioned tenant, clients, customer and fresh tokens into a generated case.

    Tokens are minted over HTTP from the bridge under test just before they are used, since
    the operations under test consume them (logout, revocation, rotation)."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        shop: Shop,
        outbox_dir: Path,
        idp: LocalIdp | None = None,
    ) -> None:
        self.session = session
        self.base_url = base_url
        self.shop = shop
        self.idp = idp
        self.outbox_dir = outbox_dir
        self.accounts = 0

    def provision(self, case: OperationCase, draw: Draw) -> None:
        shop = self.shop
        if "tenant" in (case.path_parameters or {}):
            case.path_parameters["tenant"] = shop.tenant
        query = case.query if case.query is not None else {}
        if "tenant" in query or case.path.startswith("/customerlogin/"):
            query["tenant"] = shop.tenant
            query["client_id"] = shop.storefront_id
        case.query = query
        headers = case.headers if case.headers is not None else {}
        case.headers = headers
        handler = getattr(self, "_" + re.sub(r"\W+", "_", case.path).strip("_"), None)
        if handler is not None:
            handler(case, draw)

    # -- /oauth/*

    def _oauth_token(self, case: OperationCase, draw: Draw) -> None:
        self._client(case, draw, kinds=["service"])

    _oauth2_token = _oauth_token  # the same grant, answered as RFC 6749 says

    def _oauth_introspect(self, case: OperationCase, draw: Draw) -> None:
        self._client(case, draw, kinds=["service", "storefront"])
        body_object(case)["token"] = self._token(draw(st.sampled_from(TOKEN_KINDS)))

    _oauth_revoke = _oauth_introspect

    def _client(self, case: OperationCase, draw: Draw, kinds: list[str]) -> None:
        shop = self.shop
        body = body_object(case)
        for name in ("client_id", "client_secret"):
            body.pop(name, None)
        case.headers.pop("Authorization", None)
        kind = draw(st.sampled_from(kinds))
        if kind == "storefront":
            body["client_id"] = shop.storefront_id
        elif draw(st.booleans(), label="basic"):
            case.headers.update(basic(shop.service_id, shop.service_secret))
        else:
            body.update(client_id=shop.service_id, client_secret=shop.service_secret)

    # -- /customerlogin/*

    def _customerlogin_auth_anonymous_refresh(self, case: OperationCase, draw: Draw) -> None:
        session = self._anonymous()
        case.query.pop("refresh_token", None)
        case.query.pop("anonymous_token", None)
        if draw(st.booleans(), label="legacy"):
            case.query["anonymous_token"] = session["access_token"]
        else:
            case.query["refresh_token"] = session["refresh_token"]

    # -- /customer/{tenant}/*

    def _customer_tenant_login(self, case: OperationCase, draw: Draw) -> None:
        case.headers.update(bearer(self._anonymous()["access_token"]))
        body_object(case).update(email=self.shop.email, password=self.shop.password)

    def _customer_tenant_refreshauthtoken(self, case: OperationCase, draw: Draw) -> None:
        customer = self._customer()
        case.headers.update(bearer(customer["access_token"]))
        case.query["refreshToken"] = customer["refresh_token"]
        entity = draw(st.sampled_from(["generated", "none", *self.shop.legal_entities]))
        if entity == "none":
            case.query.pop("legalEntityId", None)
        elif entity != "generated":
            case.query["legalEntityId"] = entity

    def _customer_tenant_validateauthtoken(self, case: OperationCase, draw: Draw) -> None:
        case.headers.update(bearer(self._token(draw(st.sampled_from(ACCESS_KINDS)))))

    def _customer_tenant_logout(self, case: OperationCase, draw: Draw) -> None:
        token = self._token(draw(st.sampled_from(["anonymous", "customer"])))
        case.headers.update(bearer(token))
        if draw(st.booleans(), label="explicit accessToken"):
            case.query["accessToken"] = token
        else:
            case.query.pop("accessToken", None)

    def _customer_tenant_exchangeauthtoken(self, case: OperationCase, draw: Draw) -> None:
        if self.idp is None:  # no provider: the generated values stay
            return
        case.headers.update(bearer(self._anonymous()["access_token"]))
        self._drop(case, "subject_token", "subject_token_type", "config", "subjectAccessToken")
        case.query["subjectAccessToken"] = self.idp.token(self.shop.email)

    def _customer_tenant_socialLogin(self, case: OperationCase, draw: Draw) -> None:
        if self.idp is None:  # no provider: the generated values stay
            return
        case.headers.update(bearer(self._anonymous()["access_token"]))
        self._drop(case, "code", "redirect_uri", "code_verifier", "nonce", "config")
        verifier, _ = pkce_pair()
        redirect = "https://shop.example/callback"
        code = self.idp.authorization_code(self.shop.email, redirect, verifier)
        case.query.update(code=code, redirect_uri=redirect, code_verifier=verifier)

    @staticmethod
    def _drop(case: OperationCase, *names: str) -> None:
        """The generated values of these parameters, from the query and a body alike."""
        for name in names:
            case.query.pop(name, None)
            if isinstance(case.body, dict):
                case.body.pop(name, None)

    def _customer_tenant_me_sessions(self, case: OperationCase, draw: Draw) -> None:
        """Listing and "log out everywhere": a fresh customer's own token."""
        case.headers.update(bearer(self._customer()["access_token"]))
        if draw(st.booleans(), label="first page"):
            case.query.pop("pageToken", None)

    def _customer_tenant_me_sessions_sessionId(self, case: OperationCase, draw: Draw) -> None:
        customer = self._customer()
        case.headers.update(bearer(customer["access_token"]))
        if draw(st.booleans(), label="own session"):
            case.path_parameters["sessionId"] = customer["session_id"]

    # -- /customer/{tenant}/ account operations, on fresh customers

    def _customer_tenant_signup(self, case: OperationCase, draw: Draw) -> None:
        case.headers.update(self._anonymous_bearer())
        json_body(case).update(email=self._new_email(), password=ACCOUNT_PASSWORD)

    def _customer_tenant_signup_optin_refresh_token(self, case: OperationCase, draw: Draw) -> None:
        case.headers.update(self._anonymous_bearer())
        json_body(case)["email"] = self.shop.email

    def _customer_tenant_signup_optin_token(self, case: OperationCase, draw: Draw) -> None:
        email = self._signed_up()
        case.headers.update(self._anonymous_bearer())
        case.path_parameters["token"] = self._mailed(email)

    def _customer_tenant_password_change(self, case: OperationCase, draw: Draw) -> None:
        customer, _ = self._fresh_customer()
        case.headers.update(bearer(customer["access_token"]))
        json_body(case).update(currentPassword=ACCOUNT_PASSWORD, newPassword=CHANGED_PASSWORD)

    def _customer_tenant_password_reset(self, case: OperationCase, draw: Draw) -> None:
        case.headers.update(self._anonymous_bearer())
        json_body(case)["email"] = draw(st.sampled_from([self.shop.email, self._new_email()]))

    def _customer_tenant_password_reset_update(self, case: OperationCase, draw: Draw) -> None:
        _, email = self._fresh_customer()
        self._accepted("password/reset", {"email": email})
        case.headers.update(self._anonymous_bearer())
        json_body(case).update(
            token=self._mailed(email, "password-reset"), password=CHANGED_PASSWORD
        )

    def _customer_tenant_me_accounts_internal_email_change(
        self, case: OperationCase, draw: Draw
    ) -> None:
        customer, email = self._fresh_customer()
        case.headers.update(bearer(customer["access_token"]))
        json_body(case).update(email=email, password=ACCOUNT_PASSWORD, newEmail=self._new_email())

    def _customer_tenant_me_accounts_internal_email_change_confirm(
        self, case: OperationCase, draw: Draw
    ) -> None:
        customer, email = self._fresh_customer()
        new_email = self._new_email()
        ask = {"email": email, "password": ACCOUNT_PASSWORD, "newEmail": new_email}
        self._accepted("me/accounts/internal/email/change", ask, customer["access_token"])
        case.headers.update(self._anonymous_bearer())
        json_body(case)["token"] = self._mailed(new_email, "email-change")

    def _new_email(self) -> str:
        self.accounts += 1
        return f"fresh{self.accounts}@cases.example"

    def _signed_up(self) -> str:
        """A new account waiting for its opt-in link; its e-mail."""
        email = self._new_email()
        response = self.session.post(
            f"{self.base_url}/customer/{self.shop.tenant}/signup",
            json={"email": email, "password": ACCOUNT_PASSWORD},
            headers=self._anonymous_bearer(),
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return email

    def _fresh_customer(self) -> tuple[dict[str, Any], str]:
        """A new, confirmed customer logged in: its token response and e-mail."""
        email = self._signed_up()
        token = self._mailed(email)
        customer = self._ok(
            "GET",
            f"/customer/{self.shop.tenant}/signup/optin/{token}",
            headers=self._anonymous_bearer(),
        )
        return customer, email

    def _accepted(self, route: str, body: dict[str, str], token: str = "") -> None:
        headers = bearer(token) if token else self._anonymous_bearer()
        response = self.session.post(
            f"{self.base_url}/customer/{self.shop.tenant}/{route}",
            json=body,
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 204, response.text

    def _mailed(self, email: str, kind: str = "signup-optin") -> str:
        """The token of the message of `kind` to `email`, once the service has written it
        (each fresh address gets at most one of each kind)."""
        deadline = time.monotonic() + MAIL_WAIT_SECONDS
        while True:
            messages = outbox.list_messages(self.outbox_dir)
            sent = [m for m in messages if (m.to, m.kind) == (email, kind)]
            if sent:
                return token_in(sent[-1].body)
            assert time.monotonic() < deadline, f"no mail to {email}"
            time.sleep(0.01)

    def _anonymous_bearer(self) -> dict[str, str]:
        return bearer(self._anonymous()["access_token"])

    # -- minting

    def _token(self, kind: str) -> str:
        if kind == "service":
            return str(self._service()["access_token"])
        session = self._customer() if kind.startswith("customer") else self._anonymous()
        field = "refresh_token" if kind.endswith("refresh") else "access_token"
        return str(session[field])

    def _anonymous(self) -> dict[str, Any]:
        return self._ok(
            "GET",
            "/customerlogin/auth/anonymous/login",
            params={"tenant": self.shop.tenant, "client_id": self.shop.storefront_id},
        )

    def _customer(self) -> dict[str, Any]:
        return self._ok(
            "POST",
            f"/customer/{self.shop.tenant}/login",
            json={"email": self.shop.email, "password": self.shop.password},
            headers=bearer(self._anonymous()["access_token"]),
        )

    def _service(self) -> dict[str, Any]:
        return self._ok(
            "POST",
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.shop.service_id,
                "client_secret": self.shop.service_secret,
            },
        )

    def _ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.session.request(method, self.base_url + path, timeout=30, **kwargs)
        assert response.status_code == 200, f"minting via {path}: {response.status_code}"
        body: dict[str, Any] = response.json()
        return body


TOKEN_KINDS = ["anonymous", "anonymous refresh", "customer", "customer refresh", "service"]
ACCESS_KINDS = ["anonymous", "customer", "service"]


def body_object(case: OperationCase) -> dict[str, Any]:
    """The generated body of an operation whose body is an object (the form and JSON bodies that
    RealData fills in): schemathesis types a body as any JSON value, bytes or not set."""
    body = case.body
    assert isinstance(body, dict), f"{case.path}: the generated body is not an object"
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def json_body(case: OperationCase) -> dict[str, Any]:
    """The JSON object body schemathesis generated for an operation whose body is one."""
    body = case.body
    assert isinstance(body, dict), f"not a JSON object body: {type(body).__name__}"
    return body
