"""Tenancy: every job and media row belongs to a tenant; request_id is unique per tenant.

Existing rows go to the default tenant (the one callers get while authentication is off). The
column is added nullable, filled, then made NOT NULL without a server default, so an insert that
forgets the tenant fails instead of landing silently in the default tenant.

Revision ID: 0003_tenancy
Revises: 0002_api_keys
Create Date: 2026-12-01 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_tenancy"
down_revision: str | None = "0002_api_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: mediagen.auth.principal.DEFAULT_TENANT, spelled out: a migration must not change when the
#: code it was written against does.
DEFAULT_TENANT = "default"
TENANT_LENGTH = 100


def _add_tenant(table: str) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.add_column(sa.Column("tenant", sa.String(length=TENANT_LENGTH), nullable=True))
    op.execute(
        sa.table(table, sa.column("tenant", sa.String())).update().values(tenant=DEFAULT_TENANT)
    )


def upgrade() -> None:
    _add_tenant("jobs")
    _add_tenant("media")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column(
            "tenant", existing_type=sa.String(length=TENANT_LENGTH), nullable=False
        )
        batch_op.drop_constraint("uq_jobs_request_id", type_="unique")
        batch_op.create_unique_constraint("uq_jobs_tenant_request_id", ["tenant", "request_id"])
        batch_op.create_index(
            "ix_jobs_tenant_create_time_id", ["tenant", "create_time", "id"], unique=False
        )
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.alter_column(
            "tenant", existing_type=sa.String(length=TENANT_LENGTH), nullable=False
        )


def downgrade() -> None:
    # Fails if two tenants used the same request_id: the old schema cannot hold both jobs.
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_column("tenant")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_tenant_create_time_id")
        batch_op.drop_constraint("uq_jobs_tenant_request_id", type_="unique")
        batch_op.create_unique_constraint("uq_jobs_request_id", ["request_id"])
        batch_op.drop_column("tenant")
