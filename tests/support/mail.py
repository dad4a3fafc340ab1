"""What the account-mail tests share: a mailer that keeps what it is given, and the one-time
token read back out of a message (the last line of its body that is a bare token)."""

from __future__ import annotations

import re

from server.mail.message import MailMessage

TOKEN_LINE = re.compile(r"^[A-Za-z0-9_-]{40,}$")


class RecordingMailer:
    def __init__(self) -> None:
        self.messages: list[MailMessage] = []

    async def send(self, message: MailMessage) -> None:
        self.messages.append(message)


def token_in(body: str) -> str:
    """The one-time token a message body carries."""
    found = [line for line in body.splitlines() if TOKEN_LINE.fullmatch(line.strip())]
    assert found, "no token in the message"
    return found[-1].strip()
