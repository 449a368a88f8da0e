"""Patient codes unique without regard to case (``P001`` and ``p001`` are one patient).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A study that already holds two codes differing only in case keeps them (cleftscore refuses
    # new ones either way, and `study patients` shows both); the index would fail on it.
    dup = op.get_bind().exec_driver_sql("SELECT lower(code) FROM patients GROUP BY lower(code) HAVING count(*) > 1")
    if dup.first() is None:
        op.execute("CREATE UNIQUE INDEX ux_patients_code_nocase ON patients (lower(code))")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ux_patients_code_nocase")
