"""An index for counting a tenant's active jobs (the active-job quota, on every submission).

Revision ID: 0004_active_jobs_index
Revises: 0003_tenancy
Create Date: 2026-12-01 09:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_active_jobs_index"
down_revision: str | None = "0003_tenancy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_tenant_status", "jobs", ["tenant", "status"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_status", table_name="jobs")
