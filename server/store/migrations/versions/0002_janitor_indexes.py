"""Indexes for the janitor (purge of expired tokens and dead sessions).

tokens (session_id, expires_at) replaces tokens (session_id): it still finds a session's tokens,
answers "has this session a live token?" from the index alone, and finds the expired tokens
without a session. sessions (revoked_at) finds the revoked sessions to delete.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_tokens_session_id_expires_at", "tokens", ["session_id", "expires_at"])
    op.drop_index("ix_tokens_session_id", table_name="tokens")
    op.create_index("ix_sessions_revoked_at", "sessions", ["revoked_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_revoked_at", table_name="sessions")
    op.create_index("ix_tokens_session_id", "tokens", ["session_id"])
    op.drop_index("ix_tokens_session_id_expires_at", table_name="tokens")
