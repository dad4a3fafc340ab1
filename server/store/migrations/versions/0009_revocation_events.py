"""The revocation feed's table (server/store/schema.py `revocation_events`).

One row per committed revocation, in the revoking transaction; `position` orders them and is
never handed out twice (AUTOINCREMENT on SQLite, a sequence on PostgreSQL). The janitor deletes
rows older than TOKENSERVICE_REVOCATION_FEED_RETENTION_SECONDS, by `revoked_at`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revocation_events",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=False),
        sa.Column("fingerprints", sa.Text, nullable=False),
        sa.Column("sessions", sa.Text, nullable=False),
        sa.Column("everything", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("position", name="pk_revocation_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_revocation_events_revoked_at", "revocation_events", ["revoked_at"])


def downgrade() -> None:
    op.drop_index("ix_revocation_events_revoked_at", table_name="revocation_events")
    op.drop_table("revocation_events")
