"""The tokens that authorise the account calls: an anonymous access token of the tenant (sign-up,
opt-in, reset, e-mail confirm, as the reference says), or the customer's own access token
(password and e-mail change). Refused with the same errors as every bearer elsewhere."""

from __future__ import annotations

from server import validation
from server.core import Core
from server.errors import AccessDenied, InvalidToken
from server.grants import customer_password
from server.grants.common import is_live, refused_bearer, stored_token
from server.records import TokenKind, TokenRecord, TokenUse

NOT_CUSTOMER = "the token is not an active customer access token"


async def anonymous(core: Core, token: str, tenant: str, now: int) -> TokenRecord:
    """The live anonymous access token of `tenant` (the customer login's own check)."""
    validation.token(token, "anonymous_token")
    return await customer_password.anonymous_access_token(core, token, tenant, now)


async def anonymous_about(core: Core, tenant: str, email: str, token: str) -> tuple[str, int]:
    """What every anonymous call about an e-mail (sign-up, opt-in resend, reset request) checks
    first, in this order: the tenant, the e-mail, the anonymous token. Returns the e-mail as
    stored (validated, lower-cased) and the time the call is judged at."""
    validation.tenant(tenant)
    email = validation.email(email)
    now = core.now()
    await anonymous(core, token, tenant, now)
    return email, now


async def customer(core: Core, token: str, tenant: str, now: int) -> TokenRecord:
    """The live customer access token of `tenant`, with its customer and session."""
    validation.token(token, "access_token")
    record = await stored_token(
        core, token, TokenUse.ACCESS, kind=TokenKind.CUSTOMER, in_session=True
    )
    if record is None or record.customer_id is None:
        raise InvalidToken(NOT_CUSTOMER)
    if record.tenant != tenant:
        raise AccessDenied("the token belongs to another tenant")
    if not is_live(record, now):
        raise refused_bearer(record, now, NOT_CUSTOMER)
    return record
