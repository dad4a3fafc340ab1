"""A customer's sessions: listed, one ended, all ended ("log out everywhere"), and every session
of a legal entity ended (docs/sessions.md).

Two kinds of caller. An admin (AdminService, the CLI) names the customer by tenant and email or
id. The customer itself presents an active customer access token of the tenant (the
`/customer/{tenant}/me/sessions` routes and TokenService's *OwnSession* RPCs) and reaches only
its own sessions: a session id of anyone else is answered exactly like an unknown one (404,
NotFound), so ids cannot be probed.

A listing is newest first and paginated the AIP-158 way: `page_size` (0: the setting
TOKENSERVICE_SESSIONS_PAGE_SIZE, which is also the most one page holds) and an opaque
`page_token` from the previous page's `next_page_token` ("" on the last page). It shows what is
safe to show: ids, times, client and legal entity, never a token or a digest.

Each revocation is one store transaction (server/store/protocol.py CustomerSessions), which
this replica's introspection cache hears of before the call returns; other replicas' caches
follow within TOKENSERVICE_TOKEN_CACHE_SECONDS.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses

from server import validation
from server.core import Core
from server.errors import AccessDenied, InvalidRequest, InvalidToken, NotFound
from server.grants.common import is_live, refused_bearer, stored_token
from server.records import (
    CustomerRecord,
    CustomerSession,
    SessionCursor,
    TokenKind,
    TokenRecord,
    TokenUse,
)
from server.settings import ConfigError, Settings

MAX_PAGE_SIZE = 1000
MAX_PAGE_TOKEN = 256
NOT_ACTIVE_BEARER = "the bearer token is not an active access token of this tenant"
NOT_A_CUSTOMER = "only a customer access token may manage its sessions"
NO_SUCH_SESSION = "no active session with this id"
NO_SUCH_CUSTOMER = "no customer with this email or id in this tenant"
BAD_PAGE_TOKEN = "page_token is not one this service issued"  # noqa: S105 - a message


@dataclasses.dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of a customer's sessions. `current_session_id` is the caller's own session
    (self-service only; "" for an admin)."""

    sessions: tuple[CustomerSession, ...]
    next_page_token: str = ""
    current_session_id: str = ""


def check_settings(settings: Settings) -> None:
    """Refuses a page size the service cannot serve (at start, before anything opens)."""
    if not 1 <= settings.sessions_page_size <= MAX_PAGE_SIZE:
        raise ConfigError(f"TOKENSERVICE_SESSIONS_PAGE_SIZE must be between 1 and {MAX_PAGE_SIZE}")


# --- the customer's own sessions ------------------------------------------------------------
async def list_own(
    core: Core, tenant: str, bearer_token: str, *, page_size: int = 0, page_token: str = ""
) -> SessionPage:
    me = await customer_bearer(core, tenant, bearer_token)
    assert me.customer_id is not None
    page = await _page(core, me.customer_id, page_size, page_token)
    return dataclasses.replace(page, current_session_id=me.session_id or "")


async def end_own(core: Core, tenant: str, bearer_token: str, session_id: str) -> None:
    """Ends one of the caller's active sessions (its own current one too: a logout); NotFound
    for any other id."""
    me = await customer_bearer(core, tenant, bearer_token)
    validation.identifier(session_id, "session_id")
    assert me.customer_id is not None
    if not await core.store.revoke_customer_session(me.customer_id, session_id, now=core.now()):
        raise NotFound(NO_SUCH_SESSION, field="session_id")


async def end_all_own(
    core: Core, tenant: str, bearer_token: str, *, keep_current: bool = False
) -> int:
    """ "Log out everywhere": ends every session of the caller, or with `keep_current` every one
    but the bearer's own. Returns how many it ended."""
    me = await customer_bearer(core, tenant, bearer_token)
    assert me.customer_id is not None
    ended = await core.store.revoke_customer_sessions(
        me.customer_id, except_session_id=me.session_id if keep_current else None, now=core.now()
    )
    return len(ended)


async def customer_bearer(core: Core, tenant: str, bearer_token: str) -> TokenRecord:
    """The caller's own customer access token: InvalidToken (401) when it is missing, unknown,
    revoked, expired (ExpiredToken) or of another tenant; AccessDenied (403) when it is an
    active access token of the tenant, but not a customer's."""
    validation.tenant(tenant)
    if not bearer_token:
        raise InvalidToken("a customer access token is required (bearer_token)")
    validation.token(bearer_token, "bearer_token")
    record = await stored_token(core, bearer_token, TokenUse.ACCESS)
    now = core.now()
    if record is None or record.tenant != tenant:
        raise InvalidToken(NOT_ACTIVE_BEARER)
    if record.kind is not TokenKind.CUSTOMER or not record.customer_id:
        if is_live(record, now):
            raise AccessDenied(NOT_A_CUSTOMER)
        raise InvalidToken(NOT_ACTIVE_BEARER)
    if not is_live(record, now):
        raise refused_bearer(record, now, NOT_ACTIVE_BEARER)
    return record


# --- an admin's view ------------------------------------------------------------------------
async def list_of_customer(
    core: Core,
    tenant: str,
    *,
    email: str = "",
    customer_id: str = "",
    page_size: int = 0,
    page_token: str = "",
) -> SessionPage:
    customer = await find_customer(core, tenant, email=email, customer_id=customer_id)
    return await _page(core, customer.id, page_size, page_token)


async def end_of_customer(
    core: Core, tenant: str, session_id: str, *, email: str = "", customer_id: str = ""
) -> None:
    """Ends one active session of the customer; NotFound when it is not one."""
    customer = await find_customer(core, tenant, email=email, customer_id=customer_id)
    validation.identifier(session_id, "session_id")
    if not await core.store.revoke_customer_session(customer.id, session_id, now=core.now()):
        raise NotFound(NO_SUCH_SESSION, field="session_id")


async def end_all_of_customer(
    core: Core,
    tenant: str,
    *,
    email: str = "",
    customer_id: str = "",
    except_session_id: str = "",
) -> int:
    """Ends every session of the customer but `except_session_id` (if given); returns how
    many it ended."""
    customer = await find_customer(core, tenant, email=email, customer_id=customer_id)
    validation.identifier(except_session_id, "except_session_id", required=False)
    ended = await core.store.revoke_customer_sessions(
        customer.id, except_session_id=except_session_id or None, now=core.now()
    )
    return len(ended)


async def end_all_of_legal_entity(core: Core, tenant: str, legal_entity_id: str) -> int:
    """Ends every session of the tenant whose current legal entity is `legal_entity_id`;
    returns how many (0 for an id no session has). NotFound for an unknown tenant."""
    validation.tenant(tenant)
    validation.identifier(legal_entity_id, "legal_entity_id")
    if await core.store.get_tenant(tenant) is None:
        raise NotFound(f"unknown tenant '{tenant}'", field="tenant")
    ended = await core.store.revoke_legal_entity_sessions(tenant, legal_entity_id, now=core.now())
    return len(ended)


async def find_customer(
    core: Core, tenant: str, *, email: str = "", customer_id: str = ""
) -> CustomerRecord:
    """The customer of `tenant` named by exactly one of `email` and `customer_id`."""
    validation.tenant(tenant)
    if bool(email) == bool(customer_id):
        raise InvalidRequest("name the customer by exactly one of email and customer_id")
    if email:
        customer = await core.store.find_customer(tenant, validation.email(email))
    else:
        customer = await core.store.get_customer(validation.identifier(customer_id, "customer_id"))
    if customer is None or customer.tenant != tenant:
        raise NotFound(NO_SUCH_CUSTOMER, field="email" if email else "customer_id")
    return customer


# --- pages ----------------------------------------------------------------------------------
async def _page(core: Core, customer_id: str, page_size: int, page_token: str) -> SessionPage:
    limit = _limit(core.settings, page_size)
    after = decode_page_token(page_token)
    found = await core.store.list_customer_sessions(
        customer_id, now=core.now(), limit=limit + 1, after=after
    )
    if len(found) <= limit:
        return SessionPage(tuple(found))
    last = found[limit - 1]
    return SessionPage(
        tuple(found[:limit]), encode_page_token(SessionCursor(last.created_at, last.session_id))
    )


def _limit(settings: Settings, page_size: int) -> int:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 0:
        raise InvalidRequest("page_size must be a whole number, 0 or more", field="page_size")
    return min(page_size or settings.sessions_page_size, settings.sessions_page_size)


def encode_page_token(cursor: SessionCursor) -> str:
    raw = f"{cursor.created_at}.{cursor.session_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(page_token: str) -> SessionCursor | None:
    """The cursor of a token encode_page_token made; None for ""; InvalidRequest otherwise
    (the token is a position only: a made-up one shows nothing but the caller's own)."""
    if not page_token:
        return None
    if len(page_token) > MAX_PAGE_TOKEN:
        raise InvalidRequest(BAD_PAGE_TOKEN, field="page_token")
    try:
        raw = base64.urlsafe_b64decode(page_token + "=" * (-len(page_token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest(BAD_PAGE_TOKEN, field="page_token") from None
    created, _, session_id = raw.partition(".")
    if (
        not created.isdigit()
        or len(created) > 18
        or not validation.ID_PATTERN.fullmatch(session_id)
    ):
        raise InvalidRequest(BAD_PAGE_TOKEN, field="page_token")
    return SessionCursor(int(created), session_id)
