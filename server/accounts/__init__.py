"""What customers do to their own accounts: sign-up (with double opt-in), password change and
reset, e-mail change; one module per operation, and what they share."""
