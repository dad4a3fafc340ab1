"""The bridge answers at all, over both backends (the per-route files test each route)."""

from __future__ import annotations

from tests.integration.http.conftest import Bridge


async def test_anonymous_login_then_validate(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("smoke")
    anonymous = await bridge.anonymous_login(shop)
    response = await bridge.http.get(
        f"/customer/{shop.tenant}/validateauthtoken",
        headers={"Authorization": f"Bearer {anonymous['access_token']}"},
    )
    assert response.status_code == 200
    assert response.json()["sessionId"] == anonymous["sessionId"]
