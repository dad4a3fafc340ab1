"""Facts about the database itself: `service_meta(name, value)`.

It holds the secret's canary (an HMAC under a subkey of the server secret, written at the first
start; every later start compares it, so a wrong secret is refused instead of making every
stored token unusable: server/startup.py) and the row readiness rewrites while writes fail
(SqlStore.ping). Nothing in it reveals the secret.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_meta",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_service_meta"),
    )


def downgrade() -> None:
    op.drop_table("service_meta")
