"""Outgoing mail: the Mailer protocol, the embedded outbox, SMTP, and delivery off the request."""
