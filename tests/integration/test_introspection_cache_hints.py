"""Cache hints on introspection (docs/resource-servers.md): an active answer says how many
seconds a resource server may keep it, the setting at most and never past the token's expiry;
an inactive answer stays `active: false` and nothing more."""

from __future__ import annotations

import pytest

from server.core import build_core
from server.settings import ConfigError, Settings
from server.store.memory import MemoryStore
from tests.support.defaults import TEST_SECRET
from tests.support.harness import Harness
from tokenservice.v1 import token_service_pb2 as pb

HINT = 30


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"introspection_cache_hint_seconds": HINT}


async def test_an_active_answer_carries_the_setting_until_expiry_is_nearer(
    harness: Harness,
) -> None:
    shop = await harness.shop("acme")
    issued = await harness.anonymous(shop)
    assert (await harness.introspect(issued.access_token)).cache_seconds == HINT
    harness.clock.advance(3600 - 10)
    near = await harness.introspect(issued.access_token)
    assert near.active and near.expires_in == 10 and near.cache_seconds == 10
    harness.clock.advance(10)
    gone = await harness.introspect(issued.access_token)
    assert gone == pb.IntrospectTokenResponse(active=False)  # no hint on an inactive answer


async def test_every_kind_of_active_token_carries_a_hint(harness: Harness) -> None:
    shop = await harness.shop("acme")
    customer = await harness.customer(shop)
    service = await harness.service(shop)
    for token in (customer.access_token, customer.refresh_token, customer.saas_token):
        assert (await harness.introspect(token)).cache_seconds == HINT
    assert (await harness.introspect(service.access_token)).cache_seconds == HINT


@pytest.mark.parametrize("settings_overrides", [{"introspection_cache_hint_seconds": 0}])
async def test_a_hint_of_zero_says_ask_every_time(harness: Harness) -> None:
    shop = await harness.shop("acme")
    answer = await harness.introspect((await harness.anonymous(shop)).access_token)
    assert answer.active and answer.cache_seconds == 0


def test_a_negative_hint_is_refused_at_start() -> None:
    settings = Settings(introspection_cache_hint_seconds=-1)
    with pytest.raises(ConfigError, match="INTROSPECTION_CACHE_HINT_SECONDS must not be negative"):
        build_core(settings, MemoryStore(), secret=TEST_SECRET)
