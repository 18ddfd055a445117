"""One prediction belongs to at most one job; remember which attempt sent the last create.

A unique constraint on ``jobs.prediction_id``, and ``jobs.prediction_attempt`` (the attempt whose
create carried the marker a recovery looks for; docs/predictions.md).

Jobs that already share a prediction (the old recovery matched on model and input and could
adopt another job's) keep it on the oldest of them; the others lose the id so the constraint can
be built. A running one among them then looks for its own prediction by marker, finds none (it
was created without one) and starts afresh; a finished one only loses the reference.

Revision ID: 0005_prediction_unique
Revises: 0004_active_jobs_index
Create Date: 2026-12-01 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_prediction_unique"
down_revision: str | None = "0004_active_jobs_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE jobs SET prediction_id = NULL
        WHERE prediction_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM jobs AS older
            WHERE older.prediction_id = jobs.prediction_id
              AND (older.create_time < jobs.create_time
                   OR (older.create_time = jobs.create_time AND older.id < jobs.id))
        )
        """
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prediction_attempt", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_jobs_prediction_id"), ["prediction_id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_jobs_prediction_id"), type_="unique")
        batch_op.drop_column("prediction_attempt")
