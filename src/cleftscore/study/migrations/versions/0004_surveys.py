"""Rater surveys: photos of the study rated blind by a panel of pseudonymous raters.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "surveys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(200), nullable=False, unique=True),
        sa.Column("scale_min", sa.Integer, nullable=False),
        sa.Column("scale_max", sa.Integer, nullable=False),
        sa.Column("anchors_json", sa.Text, nullable=False),
        sa.Column("higher_is", sa.String(16), nullable=False),
        sa.Column("repeat_fraction", sa.Float, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("crop", sa.String(16), nullable=False),
        sa.Column("instructions", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("closed_at", sa.DateTime, nullable=True),
        sa.CheckConstraint("scale_min < scale_max", name="ck_surveys_scale"),
        sa.CheckConstraint("repeat_fraction >= 0 AND repeat_fraction <= 1", name="ck_surveys_repeat_fraction"),
        sa.CheckConstraint("higher_is IN ('normal', 'abnormal')", name="ck_surveys_higher_is"),
    )
    op.create_table(
        "survey_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("survey_id", sa.Integer, sa.ForeignKey("surveys.id"), nullable=False),
        sa.Column("photo_id", sa.Integer, sa.ForeignKey("photos.id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("crop_left", sa.Integer, nullable=False),
        sa.Column("crop_top", sa.Integer, nullable=False),
        sa.Column("crop_right", sa.Integer, nullable=False),
        sa.Column("crop_bottom", sa.Integer, nullable=False),
        sa.UniqueConstraint("survey_id", "photo_id", name="uq_survey_items_photo"),
    )
    op.create_table(
        "survey_raters",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("survey_id", sa.Integer, sa.ForeignKey("surveys.id"), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("order_json", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("submitted_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("survey_id", "code", name="uq_survey_raters_code"),
    )
    op.create_table(
        "survey_ratings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rater_id", sa.Integer, sa.ForeignKey("survey_raters.id"), nullable=False),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("survey_items.id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("repeat", sa.Boolean, nullable=False),
        sa.Column("rating", sa.Integer, nullable=False),
        sa.Column("rated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("rater_id", "position", name="uq_survey_ratings_position"),
    )


def downgrade() -> None:
    for table in ("survey_ratings", "survey_raters", "survey_items", "surveys"):
        op.drop_table(table)
