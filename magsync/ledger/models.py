"""The ledger's tables: one row per order, one per customer, each order's event history, the
event ids applied, the org's API usage, where reconciliation and backfills stand, and (line
items) the products and price-book entries of SKUs and each order's lines.

Times are naive UTC (``DateTime`` without a zone reads the same on SQLite and PostgreSQL);
Magento's ``updated_at`` is stored as Magento writes it, to the second.
"""

import datetime as dt

from sqlalchemy import BigInteger, Boolean, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Salesforce ids have 18 characters; Magento increment ids at most 50, edits (``-1``) included.
SF_ID = 18
ORDER_NUMBER = 64
EMAIL = 254
# Event ids as ``magsync.magento.adobe.event_key`` keeps them.
EVENT_ID = 100
# Magento SKUs are at most 64 characters; a line's external id is an item id or
# ``<number>/shipping``.
SKU = 255
LINE_KEY = 100


def utcnow():
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class OrderRow(Base):
    """What magsync knows about one order: the version applied and where it lives in Salesforce.

    ``updated_at`` and ``payload_hash`` are the last version Salesforce confirmed (or found
    unchanged). ``pending_updated_at`` / ``pending_hash`` / ``apply_started_at`` describe a write
    that began and has not been confirmed: a crash there leaves them set, and the next attempt
    treats the order's non-idempotent writes (the contact role) as in doubt. ``write_may_land``
    says whether that write may still be carried out by Salesforce (its call went unanswered, or
    its worker died mid-call) rather than answered with a failure; whatever the status says
    since (a dead letter replaces it). None on rows last written before it was kept.
    """

    __tablename__ = "ledger_orders"

    increment_id: Mapped[str] = mapped_column(String(ORDER_NUMBER), primary_key=True)
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    store_id: Mapped[int | None] = mapped_column(BigInteger)
    customer_email: Mapped[str | None] = mapped_column(String(EMAIL))
    state: Mapped[str | None] = mapped_column(String(32))
    stage: Mapped[str | None] = mapped_column(String(120))
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    payload_hash: Mapped[str | None] = mapped_column(String(64))
    sobject: Mapped[str | None] = mapped_column(String(40))
    record_id: Mapped[str | None] = mapped_column(String(SF_ID))
    account_id: Mapped[str | None] = mapped_column(String(SF_ID))
    contact_id: Mapped[str | None] = mapped_column(String(SF_ID))
    contact_role_id: Mapped[str | None] = mapped_column(String(SF_ID))
    parent_increment_id: Mapped[str | None] = mapped_column(String(ORDER_NUMBER))
    replaced_by: Mapped[str | None] = mapped_column(String(ORDER_NUMBER))
    status: Mapped[str] = mapped_column(String(20), default="received")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    pending_updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    pending_hash: Mapped[str | None] = mapped_column(String(64))
    apply_started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    write_may_land: Mapped[bool | None] = mapped_column(Boolean)
    first_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    synced_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class CustomerRow(Base):
    """A buyer's Account and Contact by lower-cased email: a repeat buyer costs no lookup."""

    __tablename__ = "ledger_customers"

    email: Mapped[str] = mapped_column(String(EMAIL), primary_key=True)
    account_id: Mapped[str | None] = mapped_column(String(SF_ID))
    contact_id: Mapped[str | None] = mapped_column(String(SF_ID))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class EventRow(Base):
    """One step in an order's history (see ``magsync.ledger.EVENT_KINDS``)."""

    __tablename__ = "ledger_events"
    __table_args__ = (Index("ix_ledger_events_order", "increment_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    increment_id: Mapped[str] = mapped_column(String(ORDER_NUMBER))
    kind: Mapped[str] = mapped_column(String(24))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    payload_hash: Mapped[str | None] = mapped_column(String(64))
    record_id: Mapped[str | None] = mapped_column(String(SF_ID))
    detail: Mapped[str | None] = mapped_column(Text)


class AppliedEventRow(Base):
    """An event id whose order version the ledger recorded (applied or skipped as old or the
    same): a redelivery of that event is skipped without calling Magento or Salesforce."""

    __tablename__ = "ledger_applied_events"
    __table_args__ = (Index("ix_ledger_applied_events_applied_at", "applied_at"),)

    event_id: Mapped[str] = mapped_column(String(EVENT_ID), primary_key=True)
    increment_id: Mapped[str] = mapped_column(String(ORDER_NUMBER))
    applied_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ApiUsageRow(Base):
    """The org's daily API usage, as the newest Salesforce answer any worker saw reported it.

    One row (``id`` 1, made by the migration). ``observed_at`` is when that answer arrived;
    ``halted_since`` is set while usage is past the halt threshold (the episode's start, so it
    is reported once); ``probe_at`` is when a call was last let through to read the usage
    while work was paused (see ``magsync.sync.pacing``).
    """

    __tablename__ = "ledger_api_usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    used: Mapped[int | None] = mapped_column(BigInteger)
    api_limit: Mapped[int | None] = mapped_column(BigInteger)
    observed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    halted_since: Mapped[dt.datetime | None] = mapped_column(DateTime)
    probe_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class WatermarkRow(Base):
    """How far reconciliation has read one store (``store_key``: base URL and store code).

    (``updated_at``, ``entity_id``) is the last order of a pass whose publishes were all
    confirmed (None before the first such pass); ``first_run_at`` is when magsync first ran
    against the store, where the very first pass starts.
    """

    __tablename__ = "ledger_watermarks"

    store_key: Mapped[str] = mapped_column(String(400), primary_key=True)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    first_run_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # When a pass last sent the missed-webhooks alert (``magsync.sync.reconcile``).
    missed_alert_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class BackfillRow(Base):
    """One backfill run's checkpoint: its range, the cursor of the last order handled, and its
    counts, so a rerun with the same range and store resumes there."""

    __tablename__ = "ledger_backfills"

    run_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    store_key: Mapped[str] = mapped_column(String(400))
    since: Mapped[dt.datetime] = mapped_column(DateTime)
    until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    cursor_updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    cursor_entity_id: Mapped[int | None] = mapped_column(BigInteger)
    scanned: Mapped[int] = mapped_column(BigInteger, default=0)
    to_sync: Mapped[int] = mapped_column(BigInteger, default=0)
    synced: Mapped[int] = mapped_column(BigInteger, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class ProductRow(Base):
    """The Product2 a SKU resolved to (line items): a known SKU costs no lookup."""

    __tablename__ = "ledger_products"

    sku: Mapped[str] = mapped_column(String(SKU), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(SF_ID))
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class PriceEntryRow(Base):
    """The PricebookEntry of a SKU in a price book (``pricebook``: ``SALESFORCE_PRICEBOOK_ID``
    as set, ``standard`` or an id) and currency (empty without multi-currency)."""

    __tablename__ = "ledger_price_entries"

    sku: Mapped[str] = mapped_column(String(SKU), primary_key=True)
    pricebook: Mapped[str] = mapped_column(String(SF_ID), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(SF_ID))
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class OrderLineRow(Base):
    """One OpportunityLineItem Salesforce confirmed for an order (by the line's external id), so
    a line the order no longer has is deleted by its id."""

    __tablename__ = "ledger_order_lines"

    increment_id: Mapped[str] = mapped_column(String(ORDER_NUMBER), primary_key=True)
    line_key: Mapped[str] = mapped_column(String(LINE_KEY), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(SF_ID))
