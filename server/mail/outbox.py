"""The embedded mailer: each message one file in an outbox folder, no mail server needed.

The folder is created private (0700) and each file 0600, created exclusively, because a message
holds a one-time token that opens an account. File names sort by creation time
(`<ns since epoch>-<random>.eml`), so `tokenservice mail list` shows the newest last. The files
are RFC 5322 messages, readable by any mail tool.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import os
import secrets
import time
from email.message import EmailMessage
from pathlib import Path

from server.mail.message import MailMessage
from server.settings import Settings
from server.store.sqlite_file import sqlite_file

SUFFIX = ".eml"
DEFAULT_FOLDER = "outbox"


def outbox_dir(settings: Settings) -> Path:
    """TOKENSERVICE_MAIL_OUTBOX_DIR, or "outbox" beside the SQLite database file (else in the
    working directory)."""
    if settings.mail_outbox_dir:
        return Path(settings.mail_outbox_dir).expanduser()
    database = sqlite_file(settings.database_url)
    return (database.parent if database is not None else Path.cwd()) / DEFAULT_FOLDER


class OutboxMailer:
    def __init__(self, folder: Path, sender: str) -> None:
        self.folder = folder
        self._sender = sender

    async def send(self, message: MailMessage) -> None:
        data = message.as_email(self._sender).as_bytes()
        await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> Path:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.folder / f"{time.time_ns():020d}-{secrets.token_hex(4)}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        return path


@dataclasses.dataclass(frozen=True)
class StoredMessage:
    """A message in the outbox, as `tokenservice mail list/show` presents it."""

    id: str
    to: str
    subject: str
    kind: str
    body: str


def list_messages(folder: Path) -> list[StoredMessage]:
    """Every message in the outbox, oldest first; an outbox never written to is empty."""
    if not folder.is_dir():
        return []
    return [read_message(path) for path in sorted(folder.glob(f"*{SUFFIX}"))]


def find_message(folder: Path, message_id: str) -> StoredMessage | None:
    """The message `message_id` (a file name without its suffix), or None."""
    if not message_id or "/" in message_id or message_id.startswith("."):
        return None
    path = folder / f"{message_id}{SUFFIX}"
    return read_message(path) if path.is_file() else None


def read_message(path: Path) -> StoredMessage:
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body(preferencelist=("plain",))
    return StoredMessage(
        id=path.name.removesuffix(SUFFIX),
        to=str(parsed["To"] or ""),
        subject=str(parsed["Subject"] or ""),
        kind=str(parsed["X-Tokenservice-Kind"] or ""),
        body=body.get_content() if body is not None else "",
    )
