"""One outgoing message, and what every way of sending it provides (the Mailer protocol).

A message's body may hold a one-time token: its `__repr__` shows neither the body nor the
address, so that no traceback or log line carries them.
"""

from __future__ import annotations

import dataclasses
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class MailMessage:
    to: str
    subject: str
    body: str
    # What kind of message (signup-optin, password-reset, email-change): safe to log.
    kind: str

    def __repr__(self) -> str:
        return f"MailMessage(kind={self.kind!r})"

    def as_email(self, sender: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = sender
        message["To"] = self.to
        message["Subject"] = self.subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
        message["X-Tokenservice-Kind"] = self.kind
        message.set_content(self.body)
        return message


class Mailer(Protocol):
    """Sends one message, or raises (OSError, smtplib.SMTPException); never logs its content."""

    async def send(self, message: MailMessage) -> None: ...
