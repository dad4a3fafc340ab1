"""Sending mail over SMTP, when TOKENSERVICE_SMTP_HOST is set.

The stdlib's smtplib, in a thread (asyncio.to_thread), rather than aiosmtplib: account mail is
a few messages a minute at most and leaves the request path anyway (server/mail/delivery.py),
so a thread per message costs nothing that matters, and the service gains no runtime
dependency for it. One connection per message, bounded by TOKENSERVICE_SMTP_TIMEOUT_SECONDS;
with STARTTLS (the default) the server's certificate and host name are checked against the
system's CAs or TOKENSERVICE_SMTP_CA_FILE, and credentials are sent only after it. The password
comes from TOKENSERVICE_SMTP_PASSWORD_FILE, read at each send (so a rotation needs no restart).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from pathlib import Path

from server.mail.message import MailMessage
from server.settings import ConfigError, Settings


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        if settings.smtp_username and not settings.smtp_password_file:
            raise ConfigError("TOKENSERVICE_SMTP_USERNAME needs TOKENSERVICE_SMTP_PASSWORD_FILE")
        self._settings = settings

    async def send(self, message: MailMessage) -> None:
        email = message.as_email(self._settings.mail_from)
        await asyncio.to_thread(self._send, email.as_bytes(), message.to)

    def _send(self, data: bytes, recipient: str) -> None:
        s = self._settings
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds) as client:
            client.ehlo()
            if s.smtp_starttls:
                client.starttls(context=self._tls_context())
                client.ehlo()
            if s.smtp_username:
                client.login(s.smtp_username, self._password())
            client.sendmail(s.mail_from, [recipient], data)

    def _tls_context(self) -> ssl.SSLContext:
        cafile = self._settings.smtp_ca_file or None
        return ssl.create_default_context(cafile=cafile)

    def _password(self) -> str:
        return Path(self._settings.smtp_password_file).read_text(encoding="utf-8").strip()
