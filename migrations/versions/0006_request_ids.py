"""The request id of the call that submitted each job (``jobs.submit_request_id``), so every
attempt of the job logs under it.

Nullable: jobs submitted before it (and by callers of the store without a request) have none.

Revision ID: 0006_request_ids
Revises: 0005_prediction_unique
Create Date: 2026-12-01 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_request_ids"
down_revision: str | None = "0005_prediction_unique"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("submit_request_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("submit_request_id")
