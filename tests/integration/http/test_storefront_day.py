"""A storefront's working day, the Emporix storefront SDK's way, over the real bridge (both
backends) on a real SQLite file, with the server's ManualClock standing in for eight hours.

The SDK keeps an anonymous token and its refresh token beside the customer's tokens. When the
anonymous access token expires it refreshes it with the anonymous refresh token it holds, the
one from before the login and its rotations; when the customer access token expires it calls
refreshauthtoken with the customer refresh token, authorised by its current anonymous access
token. A page reload keeps only the customer refresh token: the SDK starts a new anonymous
session and refreshes the customer token with that session's anonymous token. The customer
switches to a second legal entity, and logs out. No step may force a new login; after logout
nothing of the customer's session works any more. With refresh rotation and with it turned off
for the storefront client.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import Bridge
from tests.integration.http.expect import customer_problem
from tests.support.harness import Shop

pytestmark = pytest.mark.parametrize("database_kind", ["sqlite"])

TICK = 300  # the storefront calls the API every five minutes
MARGIN = 30  # the SDK refreshes a token that expires within this many seconds
DAY = 8 * 3600


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclasses.dataclass
class Held:
    """A token the SDK holds and the server time it expires at."""

    value: str
    expires_at: float


@dataclasses.dataclass
class StorefrontSdk:
    """What the SDK keeps, and its calls. Every answer it needs must be a success: a failure
    would send the shopper to the login page."""

    bridge: Bridge
    shop: Shop
    anonymous: Held | None = None
    anonymous_refresh: str = ""
    session_id: str = ""  # the anonymous session the SDK is on
    customer: Held | None = None
    customer_refresh: str = ""
    customer_session_id: str = ""
    refreshes: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"anonymous": 0, "customer": 0}
    )

    @property
    def now(self) -> float:
        return self.bridge.harness.clock.now()

    async def ok(self, response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 200, f"forced re-login at {self.now}: {response.text}"
        body: dict[str, Any] = response.json()
        return body

    async def start(self) -> None:
        """Anonymous login: a new anonymous session."""
        body = await self.ok(
            await self.bridge.http.get(
                "/customerlogin/auth/anonymous/login",
                params={"tenant": self.shop.tenant, "client_id": self.shop.storefront_id},
            )
        )
        self._anonymous(body)
        self.session_id = body["sessionId"]

    async def login(self) -> None:
        assert self.anonymous is not None
        body = await self.ok(
            await self.bridge.http.post(
                f"/customer/{self.shop.tenant}/login",
                json={"email": self.shop.email, "password": self.shop.password},
                headers=bearer(self.anonymous.value),
            )
        )
        assert body["session_id"] == self.session_id  # the cart's session continues
        self._customer(body)
        self.customer_session_id = body["session_id"]

    async def refresh_anonymous(self) -> None:
        body = await self.ok(
            await self.bridge.http.get(
                "/customerlogin/auth/anonymous/refresh",
                params={
                    "tenant": self.shop.tenant,
                    "client_id": self.shop.storefront_id,
                    "refresh_token": self.anonymous_refresh,
                },
            )
        )
        assert body["sessionId"] == self.session_id
        self._anonymous(body)
        self.refreshes["anonymous"] += 1

    async def refresh_customer(self, **params: str) -> None:
        assert self.anonymous is not None
        body = await self.ok(
            await self.bridge.http.get(
                f"/customer/{self.shop.tenant}/refreshauthtoken",
                params={"refreshToken": self.customer_refresh, **params},
                headers=bearer(self.anonymous.value),
            )
        )
        assert body["session_id"] == self.customer_session_id
        assert body["saas_token"]
        self._customer(body)
        self.refreshes["customer"] += 1

    async def fresh_tokens(self) -> None:
        """Before a call: refresh what expires (the anonymous token first, as it authorises the
        customer refresh)."""
        assert self.anonymous is not None
        if self.anonymous.expires_at - MARGIN <= self.now:
            await self.refresh_anonymous()
        if self.customer_refresh and (
            self.customer is None or self.customer.expires_at - MARGIN <= self.now
        ):
            await self.refresh_customer()

    async def browse(self) -> dict[str, Any]:
        """The storefront's calls: anonymous ones and, when logged in, the customer's. Returns
        what validateauthtoken says of the customer token."""
        await self.fresh_tokens()
        assert self.anonymous is not None
        anonymous = await self.ok(await self.validate(self.anonymous.value))
        assert anonymous["sessionId"] == self.session_id
        assert "email" not in anonymous and "legalEntityId" not in anonymous
        assert anonymous["scope"] == f"tenant={self.shop.tenant}"
        if self.customer is None:
            return {}
        customer = await self.ok(await self.validate(self.customer.value))
        assert customer["sessionId"] == self.customer_session_id
        assert customer["email"] == self.shop.email
        return customer

    async def reload(self) -> None:
        """A page reload: only the customer refresh token survives; a new anonymous session."""
        self.anonymous, self.anonymous_refresh, self.customer = None, "", None
        await self.start()
        assert self.session_id != self.customer_session_id
        await self.fresh_tokens()

    async def logout(self) -> None:
        assert self.customer is not None
        response = await self.bridge.http.get(
            f"/customer/{self.shop.tenant}/logout", headers=bearer(self.customer.value)
        )
        assert response.status_code == 204, response.text

    async def validate(self, token: str) -> httpx.Response:
        return await self.bridge.http.get(
            f"/customer/{self.shop.tenant}/validateauthtoken", headers=bearer(token)
        )

    def _anonymous(self, body: dict[str, Any]) -> None:
        self.anonymous = Held(body["access_token"], self.now + body["expires_in"])
        self.anonymous_refresh = body["refresh_token"]

    def _customer(self, body: dict[str, Any]) -> None:
        self.customer = Held(body["access_token"], self.now + body["expires_in"])
        self.customer_refresh = body["refresh_token"]


async def browse_until(sdk: StorefrontSdk, end: float) -> list[dict[str, Any]]:
    seen = []
    while sdk.now < end:
        sdk.bridge.harness.clock.advance(TICK)
        seen.append(await sdk.browse())
    return seen


@pytest.mark.parametrize("rotation", [True, False], ids=["rotating", "rotation-off"])
async def test_a_storefronts_day_needs_no_second_login(bridge: Bridge, rotation: bool) -> None:
    harness = bridge.harness
    shop = await harness.shop("shopa", rotation=rotation)
    assert len(shop.legal_entities) == 2
    sdk = StorefrontSdk(bridge, shop)
    start = sdk.now
    await sdk.start()
    await browse_until(sdk, start + 600)
    await sdk.login()
    # Everything of the customer's session the SDK ever held, to check after logout.
    pre_login_anonymous_access = sdk.anonymous.value if sdk.anonymous else ""
    old_session: list[str] = [pre_login_anonymous_access]

    # Morning: the pre-login anonymous refresh lineage and same-session bearers.
    seen = await browse_until(sdk, start + 5 * 3600)
    assert all("legalEntityId" not in customer for customer in seen)  # two: none chosen
    assert sdk.refreshes == {"anonymous": 5, "customer": 1}  # hourly; once after 4 h
    assert sdk.anonymous is not None and sdk.customer is not None
    old_session += [sdk.anonymous.value, sdk.anonymous_refresh, sdk.customer.value]
    session = await harness.core.store.get_session(sdk.customer_session_id)
    assert session is not None and session.customer_id == shop.customer_id

    # A page reload: a new anonymous session authorises the stored customer refresh token.
    await sdk.reload()
    assert sdk.refreshes["customer"] == 2
    assert sdk.customer is not None
    old_session.append(sdk.customer.value)
    await browse_until(sdk, start + 6 * 3600)

    # The customer switches to the second legal entity; later refreshes keep it.
    await sdk.refresh_customer(legalEntityId=shop.legal_entities[1])
    seen = await browse_until(sdk, start + 600 + DAY)
    assert {customer["legalEntityId"] for customer in seen} == {shop.legal_entities[1]}
    assert sdk.refreshes == {"anonymous": 8, "customer": 3}

    # The last customer refresh of the day, still with the reload's anonymous bearer.
    await sdk.refresh_customer()
    assert sdk.customer is not None
    customer_access, customer_refresh = sdk.customer.value, sdk.customer_refresh
    # Until logout the pre-reload anonymous refresh token still keeps the session alive.
    assert (await harness.introspect(old_session[2])).active
    await sdk.logout()

    http = bridge.http
    for token in (customer_access, *old_session):
        assert (await sdk.validate(token)).status_code == 401
        assert not (await harness.introspect(token)).active
    assert sdk.anonymous is not None  # the reload's anonymous session: the visitor stays
    assert (await sdk.validate(sdk.anonymous.value)).status_code == 200
    refused = await http.get(
        "/customer/shopa/refreshauthtoken",
        params={"refreshToken": customer_refresh},
        headers=bearer(sdk.anonymous.value),
    )
    customer_problem(refused, 400, "invalid_grant", "refreshToken")
    storefront = {"tenant": "shopa", "client_id": shop.storefront_id}
    for parameter, token in (
        ("refresh_token", old_session[2]),  # the pre-login anonymous refresh lineage
        ("anonymous_token", pre_login_anonymous_access),
    ):
        response = await http.get(
            "/customerlogin/auth/anonymous/refresh", params={**storefront, parameter: token}
        )
        customer_problem(response, 400, "invalid_grant", parameter)
    session = await harness.core.store.get_session(sdk.customer_session_id)
    assert session is not None and session.revoked_at is not None
