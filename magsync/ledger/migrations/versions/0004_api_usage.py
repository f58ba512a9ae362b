"""The org's daily API usage, shared by every worker process and host (quota-aware pacing).

Revision 0004, after 0003: one table with its single row (id 1), empty until a worker sees an
answer's ``Sforce-Limit-Info``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    table = op.create_table(
        "ledger_api_usage",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("used", sa.BigInteger(), nullable=True),
        sa.Column("api_limit", sa.BigInteger(), nullable=True),
        sa.Column("observed_at", sa.DateTime(), nullable=True),
        sa.Column("halted_since", sa.DateTime(), nullable=True),
        sa.Column("probe_at", sa.DateTime(), nullable=True),
    )
    op.bulk_insert(table, [{"id": 1}])


def downgrade():
    op.drop_table("ledger_api_usage")
