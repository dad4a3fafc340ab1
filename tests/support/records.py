"""Records for store tests, at a fixed time: a token and a session of tenant "demo" with
every field a test does not care about filled in."""

from __future__ import annotations

from typing import Any

from server.records import SessionContext, SessionRecord, TokenKind, TokenRecord, TokenUse

NOW = 1_700_000_000
ANON, CUST = TokenKind.ANONYMOUS, TokenKind.CUSTOMER
ACCESS, REFRESH = TokenUse.ACCESS, TokenUse.REFRESH


def token(
    digest: str,
    *,
    session: str | None = "s1",
    kind: TokenKind = ANON,
    use: TokenUse = REFRESH,
    expires_at: int = NOW + 3600,
    customer: str | None = None,
    **extra: Any,
) -> TokenRecord:
    return TokenRecord(
        digest=digest,
        kind=kind,
        use=use,
        tenant="demo",
        client_id="web",
        scope="tenant=demo",
        issued_at=NOW - 60,
        expires_at=expires_at,
        session_id=session,
        customer_id=customer,
        **extra,
    )


def session(session_id: str = "s1", **extra: Any) -> SessionRecord:
    return SessionRecord(
        session_id=session_id,
        tenant="demo",
        client_id="web",
        created_at=NOW - 60,
        updated_at=NOW - 60,
        context=SessionContext(currency="EUR", site_code="main", language="de"),
        **extra,
    )
