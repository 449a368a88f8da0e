"""Landmark corrections: points a user moved or added on a photo, each edit with what it replaced.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "landmark_corrections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("photo_id", sa.Integer, sa.ForeignKey("photos.id"), nullable=False),
        sa.Column("edit_json", sa.Text, nullable=False),
        sa.Column("previous_json", sa.Text, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_landmark_corrections_photo", "landmark_corrections", ["photo_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_landmark_corrections_photo", table_name="landmark_corrections")
    op.drop_table("landmark_corrections")
