"""Where each walk of the store stands: reconciliation watermarks and backfill checkpoints.

Revision 0005, after 0004. ``ledger_watermarks`` has one row per store (base URL and store
code): the newest (``updated_at``, ``entity_id``) a reconcile pass has seen with every publish
confirmed, and when magsync first ran against that store (a first pass starts there).
``ledger_backfills`` has one row per backfill run (its range and store): the cursor of the last
order handled and the run's counts, so a rerun resumes where it stopped.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "ledger_watermarks",
        sa.Column("store_key", sa.String(400), primary_key=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.Column("entity_id", sa.BigInteger(), nullable=True),
        sa.Column("first_run_at", sa.DateTime(), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "ledger_backfills",
        sa.Column("run_key", sa.String(64), primary_key=True),
        sa.Column("store_key", sa.String(400), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=True),
        sa.Column("cursor_updated_at", sa.DateTime(), nullable=True),
        sa.Column("cursor_entity_id", sa.BigInteger(), nullable=True),
        sa.Column("scanned", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("to_sync", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("synced", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("failed", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
    )


def downgrade():
    op.drop_table("ledger_backfills")
    op.drop_table("ledger_watermarks")
