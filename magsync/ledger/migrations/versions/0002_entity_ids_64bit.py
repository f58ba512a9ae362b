"""Magento's entity ids are unsigned 32-bit: store them as 64-bit integers.

Revision 0002, after 0001. PostgreSQL's ``integer`` stops at 2,147,483,647, below Magento's
largest id (4,294,967,295); SQLite's integers are 64-bit already (the table is rebuilt anyway,
so both databases end with the same declared types).
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = ("entity_id", "store_id")


def upgrade():
    with op.batch_alter_table("ledger_orders") as batch:
        for column in COLUMNS:
            batch.alter_column(column, type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade():
    with op.batch_alter_table("ledger_orders") as batch:
        for column in COLUMNS:
            batch.alter_column(column, type_=sa.Integer(), existing_type=sa.BigInteger())
