"""An index for counting a tenant's active jobs (the active-job quota, on every submission).

Also where the two 0002 revisions (tenancy, API keys) meet again: one head.

Revision ID: 0003_active_jobs_index
Revises: 0002_tenancy, 0002_api_keys
Create Date: 2026-12-01 09:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_active_jobs_index"
down_revision: str | tuple[str, ...] | None = ("0002_tenancy", "0002_api_keys")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_tenant_status", "jobs", ["tenant", "status"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_status", table_name="jobs")
