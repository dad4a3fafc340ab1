"""The external OpenID providers a tenant trusts: `identity_providers`, one row per tenant and
name (token exchange and social login, server/identity_providers.py). Existing tenants trust
none until an operator adds one.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "identity_providers",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("issuer", sa.String(2048), nullable=False),
        sa.Column("jwks_uri", sa.String(2048), nullable=False),
        sa.Column("audience", sa.String(2048), nullable=False),
        sa.Column("customer_claim", sa.String(64), nullable=False),
        sa.Column("create_customers", sa.Boolean(), nullable=False),
        sa.Column("customer_scopes", sa.Text(), nullable=False),
        sa.Column("algorithms", sa.String(255), nullable=False),
        sa.Column("client_id", sa.String(2048), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=False),
        sa.Column("token_endpoint", sa.String(2048), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant"], ["tenants.name"], name="fk_identity_providers_tenant_tenants"
        ),
        sa.PrimaryKeyConstraint("tenant", "name", name="pk_identity_providers"),
    )


def downgrade() -> None:
    op.drop_table("identity_providers")
