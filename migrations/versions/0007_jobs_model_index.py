"""An index for listing a tenant's jobs of one model (ListJobs ``model``), newest first.

On PostgreSQL ``model`` uses varchar_pattern_ops: ``model LIKE 'owner/name:%'`` (every version)
is then an index range whatever the database's collation, and equality (one version) still is.

Revision ID: 0007_jobs_model_index
Revises: 0006_request_ids
Create Date: 2026-12-01 16:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_jobs_model_index"
down_revision: str | None = "0006_request_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_jobs_tenant_model_create_time_id",
        "jobs",
        ["tenant", "model", "create_time", "id"],
        postgresql_ops={"model": "varchar_pattern_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_model_create_time_id", table_name="jobs")
