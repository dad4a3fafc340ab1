"""Indexes for a customer's sessions (server/customer_sessions.py).

sessions (customer_id, created_at, session_id) lists a customer's sessions newest first, a page
at a time, and finds them all to end them ("log out everywhere"); sessions (tenant,
legal_entity_id) finds a legal entity's sessions to end them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_sessions_customer_id_created_at",
        "sessions",
        ["customer_id", "created_at", "session_id"],
    )
    op.create_index("ix_sessions_tenant_legal_entity_id", "sessions", ["tenant", "legal_entity_id"])


def downgrade() -> None:
    op.drop_index("ix_sessions_tenant_legal_entity_id", table_name="sessions")
    op.drop_index("ix_sessions_customer_id_created_at", table_name="sessions")
