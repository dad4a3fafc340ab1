"""Account mail over SMTP against a real SMTP server: aiosmtpd on a loopback port, requiring
STARTTLS with a self-signed certificate made here and AUTH with the credentials from a password
file, the messages it received read back. Then the whole path: a password reset over gRPC
whose token arrives at that server and resets the password."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import smtplib
import ssl
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.mail.message import MailMessage
from server.mail.smtp import SmtpMailer
from server.settings import Settings
from tests.support.harness import Harness
from tests.support.mail import token_in
from tests.support.ports import free_port
from tokenservice.v1 import account_service_pb2 as apb
from tokenservice.v1 import account_service_pb2_grpc as apb_grpc

USER = "tokenservice"
SMTP_PASSWORD = "smtp password from a file"
NEW_PASSWORD = "another long passphrase"


@dataclasses.dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool
    login: str


class Inbox:
    """The aiosmtpd handler: keeps every message with how it arrived."""

    def __init__(self) -> None:
        self.received: list[Received] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        parsed = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        # aiosmtpd annotates auth_data as None; after AUTH it holds the LoginPassword.
        auth: Any = session.auth_data
        login = auth.login.decode() if session.authenticated else ""
        self.received.append(
            Received(
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                parsed,
                session.ssl is not None,
                login,
            )
        )
        return "250 OK"


def authenticator(
    server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@dataclasses.dataclass
class SmtpServer:
    inbox: Inbox
    port: int
    ca_file: Path
    password_file: Path

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {
            "smtp_host": "127.0.0.1",
            "smtp_port": self.port,
            "smtp_username": USER,
            "smtp_password_file": str(self.password_file),
            "smtp_ca_file": str(self.ca_file),
            "smtp_timeout_seconds": 10.0,
            "mail_from": "shop@example.com",
            **overrides,
        }


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    cert_file, key_file = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    password_file = tmp_path / "smtp-password"
    password_file.write_text(SMTP_PASSWORD + "\n")
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    controller.start()
    try:
        yield SmtpServer(inbox, port, cert_file, password_file)
    finally:
        controller.stop()


def message(to: str = "ann@shop.example") -> MailMessage:
    return MailMessage(to=to, subject="Reset your password", body="code:\n\nabc\n", kind="test")


async def test_smtp_sends_after_starttls_with_the_credentials_from_the_file(
    smtp_server: SmtpServer,
) -> None:
    mailer = SmtpMailer(Settings(**smtp_server.settings()))
    await mailer.send(message())
    [got] = smtp_server.inbox.received
    assert got.tls and got.login == USER
    assert (got.sender, got.recipients) == ("shop@example.com", ["ann@shop.example"])
    assert got.message["Subject"] == "Reset your password"
    assert got.message["To"] == "ann@shop.example"
    assert got.message.get_content().strip().endswith("abc")


async def test_smtp_refuses_a_certificate_it_cannot_verify(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    other_ca, _ = self_signed(elsewhere)  # another self-signed certificate, not the server's
    settings = Settings(**smtp_server.settings(smtp_ca_file=str(other_ca)))
    with pytest.raises(ssl.SSLCertVerificationError):
        await SmtpMailer(settings).send(message())
    assert smtp_server.inbox.received == []


async def test_smtp_without_starttls_is_refused_by_a_server_that_requires_it(
    smtp_server: SmtpServer,
) -> None:
    settings = Settings(**smtp_server.settings(smtp_starttls=False))
    with pytest.raises(smtplib.SMTPException):
        await SmtpMailer(settings).send(message())
    assert smtp_server.inbox.received == []


@pytest.fixture
def settings_overrides(smtp_server: SmtpServer) -> dict[str, object]:
    return smtp_server.settings()


async def test_a_password_reset_arrives_at_the_smtp_server(
    harness: Harness, smtp_server: SmtpServer
) -> None:
    shop = await harness.shop("acme")
    stub = apb_grpc.AccountServiceStub(harness.channel)
    anonymous = (await harness.anonymous(shop)).access_token
    await stub.RequestPasswordReset(
        apb.RequestPasswordResetRequest(tenant="acme", email=shop.email, anonymous_token=anonymous)
    )
    await harness.core.mail.settled()
    [got] = smtp_server.inbox.received
    assert got.recipients == [shop.email] and got.tls
    token = token_in(got.message.get_content())
    ended = await stub.ResetPassword(
        apb.ResetPasswordRequest(
            tenant="acme", token=token, new_password=NEW_PASSWORD, anonymous_token=anonymous
        )
    )
    assert ended.sessions_ended == 0
    with pytest.raises(grpc.aio.AioRpcError):
        await harness.customer(shop)
