"""The one-time tokens mailed to a customer (sign-up opt-in, password reset, e-mail change) and
the messages that carry them.

A token is 256 CSPRNG bits (server/tokens.py mint_token); the store keeps only its keyed digest
under a subkey of its own (KeyedDigest.link), with its purpose, tenant and expiry. It is used
once (the store deletes it as it applies it) and lives TOKENSERVICE_SIGNUP_LINK_TTL_SECONDS,
_PASSWORD_RESET_TTL_SECONDS or _EMAIL_CHANGE_TTL_SECONDS. It appears in the message only: no
log line, no error message, no answer carries it.

Messages are plain text: a link when TOKENSERVICE_ACCOUNT_LINK_BASE_URL is set (the storefront
page that takes the token and calls the matching endpoint), and the token itself in any case,
for a storefront that asks the customer to paste it.
"""

from __future__ import annotations

from server import validation
from server.core import Core
from server.mail.message import MailMessage
from server.records import AccountLink, LinkPurpose
from server.tokens import mint_token

# The path after the link base, per purpose; also the message's kind.
ACTIONS = {
    LinkPurpose.OPT_IN: "signup-optin",
    LinkPurpose.PASSWORD_RESET: "password-reset",
    LinkPurpose.EMAIL_CHANGE: "email-change",
}
SUBJECTS = {
    LinkPurpose.OPT_IN: "Confirm your new account",
    LinkPurpose.PASSWORD_RESET: "Reset your password",
    LinkPurpose.EMAIL_CHANGE: "Confirm your new e-mail address",
}
OPENINGS = {
    LinkPurpose.OPT_IN: "Welcome! To activate your account, open this link",
    LinkPurpose.PASSWORD_RESET: "To choose a new password for your account, open this link",
    LinkPurpose.EMAIL_CHANGE: "To log in with this e-mail address from now on, open this link",
}
CLOSINGS = {
    LinkPurpose.OPT_IN: "If you did not sign up, ignore this message: nothing happens.",
    LinkPurpose.PASSWORD_RESET: (
        "If you did not ask for a new password, ignore this message: your password stays."
    ),
    LinkPurpose.EMAIL_CHANGE: (
        "If you did not ask for this change, ignore this message: nothing changes."
    ),
}


def ttl(core: Core, purpose: LinkPurpose) -> int:
    settings = core.settings
    return {
        LinkPurpose.OPT_IN: settings.signup_link_ttl_seconds,
        LinkPurpose.PASSWORD_RESET: settings.password_reset_ttl_seconds,
        LinkPurpose.EMAIL_CHANGE: settings.email_change_ttl_seconds,
    }[purpose]


def new_link(
    core: Core,
    purpose: LinkPurpose,
    tenant: str,
    customer_id: str,
    now: int,
    *,
    new_email: str | None = None,
) -> tuple[str, AccountLink]:
    """A fresh token and the record (its digest only) the store keeps."""
    token = mint_token()
    link = AccountLink(
        digest=core.digests.link(token),
        purpose=purpose,
        tenant=tenant,
        customer_id=customer_id,
        created_at=now,
        expires_at=now + ttl(core, purpose),
        new_email=new_email,
    )
    return token, link


def presented_digest(core: Core, token: str, field: str = "token") -> str:
    """The digest of a token a caller brings back (checked for presence and length only)."""
    return core.digests.link(validation.token(token, field))


def message(core: Core, purpose: LinkPurpose, tenant: str, to: str, token: str) -> MailMessage:
    minutes = max(ttl(core, purpose) // 60, 1)
    lines = [f"{OPENINGS[purpose]} within {minutes} minutes:", ""]
    base = core.settings.account_link_base_url
    if base:
        lines += [
            f"{base.replace('{tenant}', tenant).rstrip('/')}/{ACTIONS[purpose]}?token={token}"
        ]
        lines += ["", "or enter this code:", ""]
    lines += [token, "", CLOSINGS[purpose], ""]
    return MailMessage(
        to=to, subject=SUBJECTS[purpose], body="\n".join(lines), kind=ACTIONS[purpose]
    )
