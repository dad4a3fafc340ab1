"""Customer accounts beyond login: `customers.active` (double opt-in), the mailed one-time
tokens (`account_links`, digests only) and each tenant's account rules (`account_policies`).

Existing customers are active: what they could do before (log in) stays.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "customers", sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true())
    )
    op.create_table(
        "account_links",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("new_email", sa.String(320), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_account_links")),
    )
    op.create_index(
        op.f("ix_account_links_expires_at"), "account_links", ["expires_at"], unique=False
    )
    op.create_index(
        "ix_account_links_customer_id_purpose",
        "account_links",
        ["customer_id", "purpose"],
        unique=False,
    )
    op.create_table(
        "account_policies",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("double_opt_in", sa.Boolean(), nullable=False),
        sa.Column("password_min_length", sa.Integer(), nullable=False),
        sa.Column("reject_common_passwords", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant"], ["tenants.name"], name=op.f("fk_account_policies_tenant_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_account_policies")),
    )


def downgrade() -> None:
    op.drop_table("account_policies")
    op.drop_index("ix_account_links_customer_id_purpose", table_name="account_links")
    op.drop_index(op.f("ix_account_links_expires_at"), table_name="account_links")
    op.drop_table("account_links")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("active")
