"""When reconciliation last alerted about missed webhooks, per store, for all processes.

Revision 0007, after 0006: ``ledger_watermarks.missed_alert_at``. A pass that finds orders whose
webhook never came claims the store's alert in this column (one UPDATE), so one Sentry event an
hour goes out however many worker processes run passes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("ledger_watermarks", sa.Column("missed_alert_at", sa.DateTime(), nullable=True))


def downgrade():
    op.drop_column("ledger_watermarks", "missed_alert_at")
