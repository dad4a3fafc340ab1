"""Each tenant's allowed browser origins (CORS): `tenants.allowed_origins`, space-separated.

The bridge answers a browser page on one of these origins with CORS headers on the tenant's
storefront endpoints (http_bridge/cors.py). Existing tenants get none: what they answered
before (no CORS headers) stays until an operator lists origins.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tenants", sa.Column("allowed_origins", sa.Text(), nullable=False, server_default="")
    )


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("allowed_origins")
