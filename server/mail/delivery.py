"""Delivering mail off the request path: the caller's answer never waits for a mail server.

That keeps a slow or absent mail server from slowing sign-up, and it is part of what makes a
password reset for a known e-mail answer in the time an unknown one does (server/accounts/
password_reset.py): the request only schedules a delivery. A delivery touches no store. At most
TOKENSERVICE_MAIL_MAX_PENDING deliveries wait at once, per process; beyond that, or when a
delivery fails, the message is dropped and logged by its kind only (never its address or
body): the customer asks again, and the throttle bounds how often.
"""

from __future__ import annotations

import asyncio
import logging

from server.mail.message import Mailer, MailMessage
from server.mail.outbox import OutboxMailer, outbox_dir
from server.mail.smtp import SmtpMailer
from server.settings import Settings

log = logging.getLogger("tokenservice.mail")


def mailer_for(settings: Settings) -> Mailer:
    """SMTP when TOKENSERVICE_SMTP_HOST is set, else the outbox folder."""
    if settings.smtp_host:
        return SmtpMailer(settings)
    return OutboxMailer(outbox_dir(settings), settings.mail_from)


class MailDelivery:
    def __init__(self, mailer: Mailer, *, max_pending: int = 100) -> None:
        self.mailer = mailer
        self._max_pending = max(max_pending, 1)
        self._pending: set[asyncio.Task[None]] = set()

    def deliver(self, message: MailMessage) -> None:
        """Schedules sending `message`; returns at once."""
        if len(self._pending) >= self._max_pending:
            log.warning(
                "mail: %s message dropped: %d deliveries pending",
                message.kind,
                len(self._pending),
            )
            return
        task = asyncio.create_task(self._send(message))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def settled(self) -> None:
        """Returns when no delivery is pending (tests, and shutdown)."""
        while self._pending:
            await asyncio.wait(list(self._pending))

    async def _send(self, message: MailMessage) -> None:
        try:
            await self.mailer.send(message)
        except Exception as error:  # reported by kind only; the customer can ask again
            log.warning("mail: %s message not delivered (%s)", message.kind, type(error).__name__)
        else:
            log.info("mail: %s message delivered", message.kind)
