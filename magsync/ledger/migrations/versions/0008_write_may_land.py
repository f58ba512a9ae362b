"""Whether an order's write in doubt may still land, kept apart from its status.

Revision 0008, after 0007: ``ledger_orders.write_may_land``. The status said it (``applying``,
``unanswered``) until a dead letter replaced it; a new event of a dead-lettered order within
``MAGSYNC_LATE_WRITE_WINDOW`` could then create the buyer's records or the contact role again
while the unanswered call was still to land. Rows keep NULL until their next write; NULL is read
from the status, as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("ledger_orders", sa.Column("write_may_land", sa.Boolean(), nullable=True))


def downgrade():
    op.drop_column("ledger_orders", "write_may_land")
