"""Line items: the Product2 and PricebookEntry ids of SKUs, and each order's lines.

Revision 0006, after 0005. ``ledger_products`` maps a SKU to its Product2; ``ledger_price_entries``
a SKU, price book and currency to its PricebookEntry (a known SKU costs no lookup);
``ledger_order_lines`` keeps the OpportunityLineItems Salesforce confirmed for each order, so a
line the order no longer has is deleted.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "ledger_products",
        sa.Column("sku", sa.String(255), primary_key=True),
        sa.Column("product_id", sa.String(18), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "ledger_price_entries",
        sa.Column("sku", sa.String(255), primary_key=True),
        sa.Column("pricebook", sa.String(18), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("entry_id", sa.String(18), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "ledger_order_lines",
        sa.Column("increment_id", sa.String(64), primary_key=True),
        sa.Column("line_key", sa.String(100), primary_key=True),
        sa.Column("record_id", sa.String(18), nullable=False),
    )


def downgrade():
    op.drop_table("ledger_order_lines")
    op.drop_table("ledger_price_entries")
    op.drop_table("ledger_products")
