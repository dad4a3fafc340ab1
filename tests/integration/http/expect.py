"""What the bridge's answers must look like, shared by the per-route test files: the reference
field sets, the two error shapes, and the headers every token response and error carries."""

from __future__ import annotations

import base64
from typing import Any

import httpx

ANONYMOUS_FIELDS = {
    "token_type",
    "access_token",
    "expires_in",
    "refresh_token",
    "refresh_token_expires_in",
    "sessionId",
    "scope",
}
CUSTOMER_FIELDS = {
    "access_token",
    "saas_token",
    "expires_in",
    "refresh_token",
    "refresh_token_expires_in",
    "token_type",
    "session_id",
    "scope",
}
# The deprecated camelCase twins of the customer responses, and the field each repeats.
TWINS = {
    "accessToken": "access_token",
    "saasToken": "saas_token",
    "expiresIn": "expires_in",
    "refreshToken": "refresh_token",
    "refreshTokenExpiresIn": "refresh_token_expires_in",
}
INVALID_TOKEN_CHALLENGE = 'Bearer realm="tokenservice", error="invalid_token"'
BASIC_CHALLENGE = 'Basic realm="tokenservice"'


def basic(client_id: str, secret: str) -> dict[str, str]:
    """HTTP Basic client authentication (RFC 6749 section 2.3.1) as a header."""
    encoded = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def assert_no_store(response: httpx.Response) -> None:
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


# The 2026 reference's 401 faults (component response `401_unauthorized`).
INVALID_ACCESS_TOKEN = "oauth.v2.InvalidAccessToken"
ACCESS_TOKEN_EXPIRED = "keymanagement.service.access_token_expired"
FAULTSTRINGS = {
    INVALID_ACCESS_TOKEN: "Invalid access token",
    ACCESS_TOKEN_EXPIRED: "Access Token expired",
    "oauth.v2.InvalidClientIdentifier": "Invalid client identifier",
    "tokenservice.invalid_credentials": "Invalid email or password",
}
ERROR_MESSAGE_FIELDS = {"status", "type", "message", "details"}


def customer_problem(
    response: httpx.Response,
    status: int,
    error: str,
    field: str | None = None,
    errorcode: str | None = None,
) -> dict[str, Any]:
    """The customer API's ErrorMessage; `field` is the one parameter named in `details` (None:
    details empty). A 401 also carries the reference's `fault`: its fixed faultstring and
    `errorcode` (checked when given)."""
    assert response.status_code == status, response.text
    assert_no_store(response)
    body: dict[str, Any] = response.json()
    if status == 401:
        assert set(body) == {*ERROR_MESSAGE_FIELDS, "fault"}, body
        assert set(body["fault"]) == {"faultstring", "detail"}, body
        assert set(body["fault"]["detail"]) == {"errorcode"}, body
        code = body["fault"]["detail"]["errorcode"]
        assert body["fault"]["faultstring"] == FAULTSTRINGS[code], body
        if errorcode is not None:
            assert code == errorcode, body
    else:
        assert set(body) == ERROR_MESSAGE_FIELDS
    assert body["status"] == status
    assert body["type"] == error
    assert isinstance(body["message"], str) and body["message"]
    if field is None:
        assert body["details"] == []
    else:
        assert [d["field"] for d in body["details"]] == [field]
    return body


def oauth_problem(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """An RFC 6749 section 5.2 error: exactly `error` and a non-empty `error_description`, with
    the Basic challenge when client authentication failed."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert_no_store(response)
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert isinstance(body["error_description"], str) and body["error_description"]
    if error == "invalid_client":
        assert response.headers["WWW-Authenticate"] == BASIC_CHALLENGE
    return body
