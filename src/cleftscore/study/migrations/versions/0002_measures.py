"""Extra measures per score (e.g. landmark asymmetry) and a visit index by patient and date.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Scores written before this revision had no measures: an empty JSON object, not NULL.
    op.add_column("scores", sa.Column("measures_json", sa.Text, nullable=False, server_default="{}"))
    op.create_index("ix_visits_patient_date", "visits", ["patient_id", "date"])


def downgrade() -> None:
    op.drop_index("ix_visits_patient_date", table_name="visits")
    with op.batch_alter_table("scores") as batch:
        batch.drop_column("measures_json")
