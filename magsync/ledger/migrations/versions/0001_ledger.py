"""The ledger: orders, customers and each order's event history.

Revision 0001, the first.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "ledger_orders",
        sa.Column("increment_id", sa.String(64), primary_key=True),
        sa.Column("entity_id", sa.Integer()),
        sa.Column("store_id", sa.Integer()),
        sa.Column("customer_email", sa.String(254)),
        sa.Column("state", sa.String(32)),
        sa.Column("stage", sa.String(120)),
        sa.Column("updated_at", sa.DateTime()),
        sa.Column("payload_hash", sa.String(64)),
        sa.Column("sobject", sa.String(40)),
        sa.Column("record_id", sa.String(18)),
        sa.Column("account_id", sa.String(18)),
        sa.Column("contact_id", sa.String(18)),
        sa.Column("contact_role_id", sa.String(18)),
        sa.Column("parent_increment_id", sa.String(64)),
        sa.Column("replaced_by", sa.String(64)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("pending_updated_at", sa.DateTime()),
        sa.Column("pending_hash", sa.String(64)),
        sa.Column("apply_started_at", sa.DateTime()),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("synced_at", sa.DateTime()),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "ledger_customers",
        sa.Column("email", sa.String(254), primary_key=True),
        sa.Column("account_id", sa.String(18)),
        sa.Column("contact_id", sa.String(18)),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "ledger_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("increment_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime()),
        sa.Column("payload_hash", sa.String(64)),
        sa.Column("record_id", sa.String(18)),
        sa.Column("detail", sa.Text()),
    )
    op.create_index("ix_ledger_events_order", "ledger_events", ["increment_id", "id"])


def downgrade():
    op.drop_index("ix_ledger_events_order", table_name="ledger_events")
    op.drop_table("ledger_events")
    op.drop_table("ledger_customers")
    op.drop_table("ledger_orders")
