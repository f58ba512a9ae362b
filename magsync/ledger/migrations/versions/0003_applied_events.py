"""The event ids the ledger has applied, so a redelivered event is skipped without any call.

Revision 0003, after 0002. Adobe I/O Events delivers at least once and retries for 24 hours;
rows are kept 7 days (``magsync.ledger.store.EVENT_RETENTION``) and pruned by the workers.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "ledger_applied_events",
        sa.Column("event_id", sa.String(100), primary_key=True),
        sa.Column("increment_id", sa.String(64), nullable=False),
        sa.Column("applied_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_ledger_applied_events_applied_at", "ledger_applied_events", ["applied_at"])


def downgrade():
    op.drop_index("ix_ledger_applied_events_applied_at", table_name="ledger_applied_events")
    op.drop_table("ledger_applied_events")
