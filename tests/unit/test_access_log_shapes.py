"""The access log's table of shown query values (http_bridge/access_log.py): each parameter it
shows keeps what a storefront really sends, and masks every kind of secret the service hands
out (access and refresh tokens, client secrets, SaaS JWTs), whichever parameter carries it."""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest

from http_bridge.access_log import MASK, SHOWN_QUERY_VALUES, masked_target
from server.clock import ManualClock
from server.core import build_core
from server.grants.common import saas_token
from server.settings import Settings
from server.store.memory import MemoryStore
from server.tokens import mint_token, new_client_secret
from tests.support.defaults import FAST_ARGON2, TEST_SECRET

# What real clients send in each shown parameter; every one must still be shown.
LEGITIMATE = {
    "tenant": ["demo", "shop42", "a" * 16],
    "client_id": ["demo-storefront", "Xk3_vQ9-pL0aZ7mN2cR5tY8w", "web.app~1:2"],
    "legalEntityId": ["le-demo-2", "LE_0042", "a" * 32],
    "siteCode": ["main", "DE_B2B"],
    "targetLocation": ["DE", "us-east"],
    "currency": ["EUR", "usd"],
    "language": ["de", "de-DE", "en_US", "zh-Hant-TW", "sr-Latn-RS"],
    "token_type_hint": ["access_token", "refresh_token"],
    "config": ["default", "site_PL", "a" * 32],
}
# Values of the right alphabet but the wrong shape; masked too.
MALFORMED = {
    "tenant": ["Demo", "de", "a" * 17, "demo\n", "1shop"],
    "client_id": ["a" * 33, "a b", "a/b", "a%b"],
    "legalEntityId": ["a" * 33, "le 1"],
    "siteCode": ["a" * 33, "main;drop"],
    "targetLocation": ["a" * 33, "DE\r\nX"],
    "currency": ["EURO", "EU", "EUR x", "€"],
    "language": ["d", "de-DE-x-verylongsubtag", "de DE", "de-DE-a-b-c"],
    "token_type_hint": ["x", "access", "saas_token", "access_token "],
    "config": ["a" * 33, "site PL", "a/b"],
}


@pytest.fixture
async def service_secrets() -> dict[str, str]:
    """One of every secret the service issues, made by the service's own code."""
    settings = Settings(**FAST_ARGON2)
    core = build_core(settings, MemoryStore(), clock=ManualClock(), secret=TEST_SECRET)
    await core.keys.ensure_active_key()
    jwt = await saas_token(
        core, customer_id="c-1", tenant="demo", session_id="s-1", now=core.now(), ttl=60
    )
    return {
        "access or refresh token": mint_token(),
        "client secret": new_client_secret(),
        "SaaS token": jwt,
    }


def logged(name: str, value: str) -> str:
    """How the access log shows `name=value` (sent percent-encoded, as a client would),
    decoded again."""
    query = f"{name}={quote(value, safe='')}".encode()
    return unquote(masked_target("/x", query).removeprefix("/x?"))


def test_every_shown_parameter_has_cases() -> None:
    assert set(LEGITIMATE) == set(SHOWN_QUERY_VALUES) == set(MALFORMED)


@pytest.mark.parametrize(
    ("name", "value"), [(name, value) for name, values in LEGITIMATE.items() for value in values]
)
def test_what_storefronts_send_is_shown(name: str, value: str) -> None:
    assert logged(name, value) == f"{name}={value}"


@pytest.mark.parametrize(
    ("name", "value"), [(name, value) for name, values in MALFORMED.items() for value in values]
)
def test_values_of_another_shape_are_masked(name: str, value: str) -> None:
    assert logged(name, value) == f"{name}={MASK}"


@pytest.mark.parametrize("name", sorted(SHOWN_QUERY_VALUES))
def test_no_secret_the_service_issues_is_shown_in_any_parameter(
    name: str, service_secrets: dict[str, str]
) -> None:
    for kind, value in service_secrets.items():
        assert logged(name, value) == f"{name}={MASK}", kind


def test_an_empty_value_is_shown_empty() -> None:
    assert logged("currency", "") == "currency="
