"""The ledger's database: the engine, and every read and write the pipeline makes.

Each write is one short transaction of its own, never held open across a Salesforce call: the
per-order lock (``locks.py``) is what keeps two workers off one order, not a database
transaction. A database error becomes ``LedgerUnavailable``, a ``RetryLater``: an event is never
dropped because the ledger was briefly unreachable.

SQLite runs in WAL mode, and every transaction starts with ``BEGIN IMMEDIATE`` (it takes the
write lock up front and waits for it up to 30 s). With the ``sqlite3`` driver's default, a
transaction would start as a reader and fail at once with "database is locked" when it tried to
write while another process was writing.
"""

import datetime as dt
import json
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

from sqlalchemy import create_engine, delete, event, func, or_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import sessionmaker

from magsync.errors import RetryLater
from magsync.ledger import migrate
from magsync.ledger.locks import AdvisoryLocks, FileLocks
from magsync.ledger.models import (
    ApiUsageRow,
    AppliedEventRow,
    BackfillRow,
    CustomerRow,
    EventRow,
    OrderLineRow,
    OrderRow,
    PriceEntryRow,
    ProductRow,
    WatermarkRow,
    utcnow,
)

# Statuses of an order whose write may still land (``OrderState.interrupted``).
INTERRUPTED = ("applying", "unanswered")

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT = 30.0
ERROR_LIMIT = 2000
# Adobe retries an event for 24 hours; its id is remembered well beyond that.
EVENT_RETENTION = dt.timedelta(days=7)
# Each worker process prunes old event ids at most this often (seconds).
PRUNE_INTERVAL = 3600.0


class LedgerUnavailable(RetryLater):
    """The ledger database could not be used (unreachable, locked, or its schema is behind)."""

    reason = "ledger_unavailable"
    system = "magsync"


def sqlite_path(url):
    """The database file of a SQLite URL (None for other databases)."""
    parsed = make_url(url)
    return parsed.database if parsed.get_backend_name() == "sqlite" else None


def _sqlite_connect(dbapi_connection, connection_record):
    # Let SQLAlchemy emit BEGIN itself (below) instead of the driver's deferred BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_begin(connection):
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_ledger_engine(url):
    """An engine for ``url`` (as ``Settings.database_url`` gives it)."""
    path = sqlite_path(url)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


@dataclass(frozen=True)
class Version:
    """One version of an order as the pipeline is about to apply (or skip) it."""

    increment_id: str
    entity_id: int | None
    store_id: int | None
    updated_at: dt.datetime
    payload_hash: str
    state: str
    customer_email: str | None
    source: str
    parent_increment_id: str | None = None
    event_id: str | None = None  # the delivery's event id, when its sender repeats it on retry


@dataclass(frozen=True)
class OrderState:
    """A snapshot of an order's ledger row (see ``OrderRow`` for the meaning of each field)."""

    increment_id: str
    entity_id: int | None = None
    store_id: int | None = None
    customer_email: str | None = None
    state: str | None = None
    stage: str | None = None
    updated_at: dt.datetime | None = None
    payload_hash: str | None = None
    sobject: str | None = None
    record_id: str | None = None
    account_id: str | None = None
    contact_id: str | None = None
    contact_role_id: str | None = None
    parent_increment_id: str | None = None
    replaced_by: str | None = None
    status: str | None = None
    attempts: int = 0
    last_error: str | None = None
    pending_updated_at: dt.datetime | None = None
    pending_hash: str | None = None
    apply_started_at: dt.datetime | None = None
    write_may_land: bool | None = None
    first_seen_at: dt.datetime | None = None
    synced_at: dt.datetime | None = None
    changed_at: dt.datetime | None = None

    @classmethod
    def of(cls, row):
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})

    @property
    def in_doubt(self):
        """A write began and was never confirmed: it may or may not have reached Salesforce."""
        return self.apply_started_at is not None

    @property
    def interrupted(self):
        """A write in doubt that may still land: its worker died mid-call (``applying``, no
        outcome noted) or a call of it went unanswered (timed out, connection lost), also when
        the order was dead-lettered since (``write_may_land``; a row last written before that
        column was kept tells it by its status)."""
        if not self.in_doubt:
            return False
        if self.write_may_land is None:
            return self.status in INTERRUPTED
        return self.write_may_land


@dataclass(frozen=True)
class Customer:
    email: str
    account_id: str | None
    contact_id: str | None


@dataclass(frozen=True)
class Applied:
    """What Salesforce confirmed for one version."""

    sobject: str
    record_id: str
    created: bool | None
    stage: str | None = None
    account_id: str | None = None
    contact_id: str | None = None
    contact_role_id: str | None = None
    new_customer: Customer | None = None
    closed_parent: str | None = None
    api_calls: int = 0
    batch: int | None = None  # orders that shared the calls, when written in a batch
    lines: dict | None = None  # line key -> OpportunityLineItem id (None: no line items)


@dataclass(frozen=True)
class SharedUsage:
    """The org's API usage as the ledger keeps it (see ``ApiUsageRow``); figures None until a
    worker shared one. Times are naive UTC."""

    used: int | None = None
    limit: int | None = None
    observed_at: dt.datetime | None = None
    halted_since: dt.datetime | None = None
    probe_at: dt.datetime | None = None

    @classmethod
    def of(cls, row):
        return cls(row.used, row.api_limit, row.observed_at, row.halted_since, row.probe_at)


@dataclass(frozen=True)
class Checkpoint:
    """Where a backfill run stands (see ``BackfillRow``); ``cursor`` is ``(updated_at,
    entity_id)`` of the last order handled, None before the first."""

    run_key: str
    store_key: str
    since: dt.datetime
    until: dt.datetime | None
    cursor: tuple | None
    scanned: int = 0
    to_sync: int = 0
    synced: int = 0
    failed: int = 0
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    @classmethod
    def of(cls, row):
        cursor = None
        if row.cursor_updated_at is not None:
            cursor = (row.cursor_updated_at, row.cursor_entity_id)
        return cls(
            row.run_key,
            row.store_key,
            row.since,
            row.until,
            cursor,
            row.scanned,
            row.to_sync,
            row.synced,
            row.failed,
            row.started_at,
            row.finished_at,
        )


@dataclass(frozen=True)
class Watermark:
    """Where reconciliation stands for one store (see ``WatermarkRow``); times naive UTC.

    ``updated_at`` and ``entity_id`` are the newest order a pass saw with every publish
    confirmed (None before the first such pass); ``first_run_at`` when magsync first ran
    against the store. ``since`` is where the next pass starts, before the overlap.
    """

    store_key: str
    updated_at: dt.datetime | None
    entity_id: int | None
    first_run_at: dt.datetime

    @classmethod
    def of(cls, row):
        return cls(row.store_key, row.updated_at, row.entity_id, row.first_run_at)

    @property
    def since(self):
        return self.updated_at or self.first_run_at


@dataclass(frozen=True)
class HistoryEvent:
    at: dt.datetime
    kind: str
    updated_at: dt.datetime | None
    payload_hash: str | None
    record_id: str | None
    detail: dict


def naive_utc(value):
    """``value`` as the naive UTC datetime the ledger stores."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _detail(values):
    kept = {k: v for k, v in values.items() if v is not None}
    return json.dumps(kept, sort_keys=True, ensure_ascii=False, default=str) if kept else None


def _noted_status(kind, status):
    if kind != "retried":
        return kind
    return "unanswered" if status in INTERRUPTED else "retrying"


def describe_error(error):
    """``reason: message`` of an outcome, short enough for the ledger."""
    if error is None:
        return None
    reason = getattr(error, "reason", None) or type(error).__name__
    return f"{reason}: {error}"[:ERROR_LIMIT]


class Ledger:
    """The sync ledger of one process. Connects lazily; ``close()`` disposes of the engine.

    Thread-safe: the threads of a worker share one engine (one connection pool) and one lock
    manager, made by the first that needs them.
    """

    def __init__(self, settings, clock=time.monotonic):
        self.settings = settings
        self.url = settings.database_url
        self._engine = None
        self._sessions = None
        self._locks = None
        self._ready = False
        self._clock = clock
        self._next_prune = None
        self._making = threading.RLock()

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def engine(self):
        if self._engine is None:
            with self._making:
                if self._engine is None:
                    self._sessions = sessionmaker(expire_on_commit=False)
                    engine = create_ledger_engine(self.url)
                    self._sessions.configure(bind=engine)
                    self._engine = engine
        return self._engine

    @property
    def is_sqlite(self):
        return sqlite_path(self.url) is not None

    def close(self):
        if self._locks is not None:
            self._locks.close()
            self._locks = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @contextmanager
    def _guard(self):
        try:
            yield
        except PoolTimeout:
            # Every pooled connection stayed busy for the pool's timeout: the order waits.
            raise LedgerUnavailable("no ledger database connection was free in time") from None
        except DBAPIError as exc:
            orig = exc.orig
            message = str(orig).strip().splitlines()[0][:200] if orig is not None else ""
            raise LedgerUnavailable(
                f"ledger database error: {type(orig).__name__}: {message}"
            ) from None

    @contextmanager
    def _transaction(self):
        self.engine  # noqa: B018 - creates the engine and session factory on first use
        with self._guard(), self._sessions.begin() as session:
            yield session

    def ready(self):
        """Make sure the schema is current: SQLite is migrated in place, PostgreSQL is checked.

        On PostgreSQL migrations are a release step (``magsync db upgrade``); until it has run,
        events are retried (``LedgerUnavailable``) rather than written against an old schema.
        """
        if self._ready:
            return
        with self._making, self._guard():
            if self._ready:
                return
            with self.engine.connect() as connection:
                current = migrate.current_revision(connection)
                connection.rollback()
            head = migrate.head_revision()
            if current != head:
                if not self.is_sqlite:
                    raise LedgerUnavailable(
                        f"the ledger database is at revision {current or 'none'}, this magsync "
                        f"needs {head}: run `magsync db upgrade`",
                        reason="ledger_schema_behind",
                    )
                before, after = migrate.upgrade(self.engine)
                log.info("ledger migrated", extra={"from_revision": before, "to_revision": after})
        self._ready = True

    @contextmanager
    def locks(self):
        """A lock session (see ``magsync.ledger.locks``)."""
        with self._making:
            if self._locks is None:
                path = sqlite_path(self.url)
                timeout = self.settings.lock_timeout
                if path is not None:
                    self._locks = FileLocks(f"{path}.locks", timeout)
                else:
                    self._locks = AdvisoryLocks(self.engine, timeout)
        with self._guard(), self._locks.session() as session:
            yield session

    # -- reads ----------------------------------------------------------------------------------

    def order(self, increment_id):
        """The order's ``OrderState``, or None when the ledger has never seen it."""
        with self._transaction() as session:
            row = session.get(OrderRow, increment_id)
            return OrderState.of(row) if row is not None else None

    def orders(self, increment_ids):
        """``{increment_id: OrderState}`` of the orders the ledger has seen, in one query."""
        numbers = sorted(set(increment_ids))
        if not numbers:
            return {}
        with self._transaction() as session:
            rows = session.scalars(select(OrderRow).where(OrderRow.increment_id.in_(numbers)))
            return {row.increment_id: OrderState.of(row) for row in rows}

    def customers(self, emails):
        """``{email: Customer}`` of the buyers the ledger knows (``email`` lower-cased)."""
        keys = sorted(set(emails))
        if not keys:
            return {}
        with self._transaction() as session:
            rows = session.scalars(select(CustomerRow).where(CustomerRow.email.in_(keys)))
            return {
                row.email: Customer(row.email, row.account_id, row.contact_id)
                for row in rows
                if row.contact_id
            }

    def customer(self, email):
        """The cached Account and Contact of a buyer (``email`` lower-cased), or None."""
        with self._transaction() as session:
            row = session.get(CustomerRow, email)
            if row is None or not row.contact_id:
                return None
            return Customer(row.email, row.account_id, row.contact_id)

    def history(self, increment_id):
        """``(OrderState or None, [HistoryEvent, ...])`` oldest event first."""
        with self._transaction() as session:
            row = session.get(OrderRow, increment_id)
            events = session.scalars(
                select(EventRow).where(EventRow.increment_id == increment_id).order_by(EventRow.id)
            ).all()
            return (
                OrderState.of(row) if row is not None else None,
                [
                    HistoryEvent(
                        e.at,
                        e.kind,
                        e.updated_at,
                        e.payload_hash,
                        e.record_id,
                        json.loads(e.detail) if e.detail else {},
                    )
                    for e in events
                ],
            )

    def event_applied(self, event_id):
        """True when an event with this id was recorded (and not yet pruned)."""
        with self._transaction() as session:
            return session.get(AppliedEventRow, event_id) is not None

    def event_counts(self):
        """``{kind: count}`` over every order's history."""
        with self._transaction() as session:
            rows = session.execute(select(EventRow.kind, func.count()).group_by(EventRow.kind))
            return {kind: count for kind, count in rows}

    # -- writes (each under the order's lock, except ``note``) ---------------------------------

    def _row(self, session, increment_id, version=None):
        rows = session.info.get("preloaded")
        if rows is not None and increment_id in rows:
            row = rows[increment_id]
        else:
            row = session.get(OrderRow, increment_id)
        if row is None:
            row = OrderRow(increment_id=increment_id, status="received", attempts=0)
            session.add(row)
            if rows is not None:
                rows[increment_id] = row
        if version is not None:
            row.entity_id = version.entity_id
            row.store_id = version.store_id
            row.customer_email = version.customer_email
            row.parent_increment_id = version.parent_increment_id
        return row

    def _event(self, session, increment_id, kind, version=None, record_id=None, **detail):
        session.add(
            EventRow(
                increment_id=increment_id,
                kind=kind,
                at=utcnow(),
                updated_at=naive_utc(version.updated_at) if version else None,
                payload_hash=version.payload_hash if version else None,
                record_id=record_id,
                detail=_detail(detail),
            )
        )

    def _remember_event(self, session, version):
        # Under the order's lock, so a repeat of this event cannot be inserting it at once.
        if version.event_id and session.get(AppliedEventRow, version.event_id) is None:
            session.add(
                AppliedEventRow(
                    event_id=version.event_id,
                    increment_id=version.increment_id,
                    applied_at=utcnow(),
                )
            )

    def _preload(self, session, increment_ids):
        # One query for a batch's rows, instead of one per order; ``_row`` finds them (or knows
        # they are new) in ``session.info``.
        numbers = sorted(set(increment_ids))
        rows = dict.fromkeys(numbers)
        if numbers:
            query = select(OrderRow).where(OrderRow.increment_id.in_(numbers))
            rows.update({row.increment_id: row for row in session.scalars(query)})
        session.info["preloaded"] = rows

    def _received(self, session, version):
        self._event(
            session,
            version.increment_id,
            "received",
            version,
            source=version.source,
            event_id=version.event_id,
        )

    def skip(self, version, reason):
        """Record a received event that changes nothing: ``stale`` or ``unchanged``.

        An unchanged version newer than the last applied one becomes the last applied one (what
        Salesforce holds is already that version), so older versions that arrive later are stale.
        """
        self.skip_many([(version, reason)])

    def skip_many(self, skips):
        """``skip`` for each ``(version, reason)``, in one transaction."""
        with self._transaction() as session:
            self._preload(session, [version.increment_id for version, _ in skips])
            for version, reason in skips:
                self._skip(session, version, reason)

    def _skip(self, session, version, reason):
        row = self._row(session, version.increment_id, version)
        self._received(session, version)
        self._event(session, version.increment_id, f"skipped_{reason}", version)
        self._remember_event(session, version)
        updated_at = naive_utc(version.updated_at)
        if reason == "unchanged" and row.updated_at is not None and updated_at > row.updated_at:
            row.updated_at = updated_at
            row.state = version.state
        if row.updated_at is not None and row.apply_started_at is None:
            row.status = "synced"

    def supersede(self, superseded):
        """Record events a newer version of their order replaced in one batch: for each
        ``(version, newer)``, ``received`` and ``skipped_superseded`` (naming the newer
        version's ``updated_at``), in one transaction. Call once the newer one is recorded."""
        with self._transaction() as session:
            for version, newer in superseded:
                self._received(session, version)
                self._event(
                    session,
                    version.increment_id,
                    "skipped_superseded",
                    version,
                    superseded_by=naive_utc(newer.updated_at),
                )
                self._remember_event(session, version)

    def begin(self, version):
        """Record a received event about to be written: the write is in doubt until ``applied``.

        Returns the attempt number of this version (1 the first time it is tried).
        """
        return self.begin_many([version])[version.increment_id]

    def begin_many(self, versions):
        """``begin`` for each version (one per order), in one transaction; ``{increment_id:
        attempt}``."""
        with self._transaction() as session:
            self._preload(session, [version.increment_id for version in versions])
            return {version.increment_id: self._begin(session, version) for version in versions}

    def _begin(self, session, version):
        row = self._row(session, version.increment_id, version)
        self._received(session, version)
        same_version = row.pending_hash == version.payload_hash and (
            row.pending_updated_at == naive_utc(version.updated_at)
        )
        row.attempts = (row.attempts or 0) + 1 if same_version else 1
        row.pending_updated_at = naive_utc(version.updated_at)
        row.pending_hash = version.payload_hash
        row.apply_started_at = utcnow()
        row.status = "applying"
        row.write_may_land = True  # until Salesforce answers: a worker killed now leaves it
        return row.attempts

    def failed(self, failures):
        """Record ``(version, status)`` of writes that failed, in one transaction: ``failed``
        when no call of the order may still land, ``unanswered`` when one may. The write stays
        in doubt (the version is not applied); ``note`` keeps the status ``unanswered``, and a
        dead letter, which replaces the status, keeps ``write_may_land``."""
        with self._transaction() as session:
            self._preload(session, [version.increment_id for version, _ in failures])
            for version, status in failures:
                row = self._row(session, version.increment_id, version)
                row.status = status
                row.write_may_land = status == "unanswered"

    def applied(self, version, applied):
        """Record what Salesforce confirmed, with the customer and parent it touched."""
        self.applied_many([(version, applied)])

    def applied_many(self, writes):
        """``applied`` for each ``(version, applied)``, in one transaction."""
        with self._transaction() as session:
            numbers = [version.increment_id for version, _ in writes]
            parents = [applied.closed_parent for _, applied in writes if applied.closed_parent]
            self._preload(session, numbers + parents)
            for version, applied in writes:
                self._applied(session, version, applied)

    def _applied(self, session, version, applied):
        row = self._row(session, version.increment_id, version)
        row.updated_at = naive_utc(version.updated_at)
        row.payload_hash = version.payload_hash
        row.state = version.state
        row.stage = applied.stage
        row.sobject = applied.sobject
        row.record_id = applied.record_id
        row.account_id = applied.account_id
        row.contact_id = applied.contact_id
        row.contact_role_id = applied.contact_role_id
        row.status = "synced"
        row.last_error = None
        row.pending_updated_at = row.pending_hash = row.apply_started_at = None
        row.write_may_land = None
        row.synced_at = utcnow()
        self._remember_event(session, version)
        self._event(
            session,
            version.increment_id,
            "synced",
            version,
            record_id=applied.record_id,
            sobject=applied.sobject,
            created=applied.created,
            stage=applied.stage,
            account_id=applied.account_id,
            contact_id=applied.contact_id,
            api_calls=applied.api_calls,
            batch=applied.batch,
        )
        if applied.new_customer is not None:
            self._customer(session, applied.new_customer)
        if applied.lines is not None:
            self._lines(session, version.increment_id, applied.lines)
        if applied.closed_parent:
            parent = self._row(session, applied.closed_parent)
            parent.replaced_by = version.increment_id
            self._event(
                session,
                applied.closed_parent,
                "replaced",
                record_id=parent.record_id,
                replaced_by=version.increment_id,
            )

    def _lines(self, session, increment_id, lines):
        session.execute(delete(OrderLineRow).where(OrderLineRow.increment_id == increment_id))
        session.add_all(
            OrderLineRow(increment_id=increment_id, line_key=key, record_id=record_id)
            for key, record_id in lines.items()
        )

    # -- line items: products, price-book entries, each order's lines ----------------------------

    def order_lines(self, increment_ids):
        """``{increment_id: {line key: OpportunityLineItem id}}`` of the orders with lines."""
        numbers = sorted(set(increment_ids))
        if not numbers:
            return {}
        found = {}
        with self._transaction() as session:
            rows = session.scalars(
                select(OrderLineRow).where(OrderLineRow.increment_id.in_(numbers))
            )
            for row in rows:
                found.setdefault(row.increment_id, {})[row.line_key] = row.record_id
        return found

    def price_entries(self, skus, pricebook, currency):
        """``{sku: PricebookEntry id}`` of the SKUs the ledger knows in ``pricebook`` and
        ``currency`` (``""`` without multi-currency)."""
        keys = sorted(set(skus))
        if not keys:
            return {}
        with self._transaction() as session:
            rows = session.scalars(
                select(PriceEntryRow).where(
                    PriceEntryRow.sku.in_(keys),
                    PriceEntryRow.pricebook == pricebook,
                    PriceEntryRow.currency == currency,
                )
            )
            return {row.sku: row.entry_id for row in rows}

    def products(self, skus):
        """``{sku: Product2 id}`` of the SKUs the ledger knows."""
        keys = sorted(set(skus))
        if not keys:
            return {}
        with self._transaction() as session:
            rows = session.scalars(select(ProductRow).where(ProductRow.sku.in_(keys)))
            return {row.sku: row.product_id for row in rows}

    def remember_products(self, products, entries, pricebook, currency):
        """Record ``products`` (``{sku: Product2 id}``) and ``entries`` (``{sku: PricebookEntry
        id}`` in ``pricebook`` and ``currency``), as Salesforce confirmed them."""
        with self._transaction() as session:
            for sku, product_id in products.items():
                row = session.get(ProductRow, sku) or ProductRow(sku=sku)
                row.product_id = product_id
                session.add(row)
            for sku, entry_id in entries.items():
                key = (sku, pricebook, currency)
                row = session.get(PriceEntryRow, key) or PriceEntryRow(
                    sku=sku, pricebook=pricebook, currency=currency
                )
                row.entry_id = entry_id
                session.add(row)

    def forget_products(self, skus):
        """Drop what the ledger knows of ``skus`` (Salesforce no longer knows an id of theirs)."""
        keys = sorted(set(skus))
        with self._transaction() as session:
            session.execute(delete(PriceEntryRow).where(PriceEntryRow.sku.in_(keys)))
            session.execute(delete(ProductRow).where(ProductRow.sku.in_(keys)))

    def _customer(self, session, customer):
        row = session.get(CustomerRow, customer.email)
        if row is None:
            row = CustomerRow(email=customer.email)
            session.add(row)
        row.account_id = customer.account_id
        row.contact_id = customer.contact_id

    def remember_customers(self, customers):
        """Record the Account and Contact of each ``Customer`` (Salesforce confirmed them)."""
        if not customers:
            return
        with self._transaction() as session:
            emails = sorted({customer.email for customer in customers})
            session.scalars(select(CustomerRow).where(CustomerRow.email.in_(emails))).all()
            for customer in customers:
                self._customer(session, customer)

    def skip_duplicate(self, increment_id, event_id):
        """Record an event skipped because its id was applied already (a redelivery)."""
        with self._transaction() as session:
            self._event(session, increment_id, "skipped_duplicate", event_id=event_id)

    def prune_events(self, now=None):
        """Forget event ids recorded more than ``EVENT_RETENTION`` ago; returns how many."""
        cutoff = (now or utcnow()) - EVENT_RETENTION
        with self._transaction() as session:
            result = session.execute(
                delete(AppliedEventRow).where(AppliedEventRow.applied_at < cutoff)
            )
            return result.rowcount or 0

    def prune_events_if_due(self):
        """``prune_events`` at most once per ``PRUNE_INTERVAL`` in this process (the first call
        prunes); returns how many were forgotten (None when not due)."""
        now = self._clock()
        with self._making:  # one thread of the process prunes, the others go on
            if self._next_prune is not None and now < self._next_prune:
                return None
            self._next_prune = now + PRUNE_INTERVAL
        return self.prune_events()

    def forget_customer(self, email):
        """Drop a buyer's remembered ids (Salesforce no longer has those records)."""
        with self._transaction() as session:
            row = session.get(CustomerRow, email)
            if row is not None:
                session.delete(row)

    def note(self, increment_id, kind, error=None, attempt=None, entity_id=None):
        """Record an outcome the task shell decided: ``retried`` or ``dead_lettered``.

        Taken without the order's lock (the shell must not wait on it): the row's status and last
        error say what happened last, and the history keeps every outcome. A retried order whose
        write may still land (status ``applying`` or ``unanswered``) stays ``unanswered``.
        """
        values = {"last_error": describe_error(error)}
        if attempt is not None:
            values["attempts"] = attempt
        for tries_left in (1, 0):
            try:
                with self._transaction() as session:
                    row = session.get(OrderRow, increment_id)
                    if row is None:
                        row = OrderRow(increment_id=increment_id, entity_id=entity_id, attempts=0)
                        session.add(row)
                    for key, value in values.items():
                        setattr(row, key, value)
                    row.status = _noted_status(kind, row.status)
                    self._event(
                        session,
                        increment_id,
                        kind,
                        reason=getattr(error, "reason", None),
                        error=str(error)[:ERROR_LIMIT] if error is not None else None,
                        attempt=attempt,
                    )
                return
            except LedgerUnavailable as exc:
                # Another worker created the row at the same moment: update it instead.
                if tries_left and isinstance(exc.__context__, IntegrityError):
                    continue
                raise

    # -- backfill checkpoints (``magsync.sync.backfill``) -----------------------------------------

    def backfill_checkpoint(self, run_key):
        """The ``Checkpoint`` of run ``run_key``, or None."""
        with self._transaction() as session:
            row = session.get(BackfillRow, run_key)
            return Checkpoint.of(row) if row is not None else None

    def start_backfill(self, run_key, store_key, since, until=None):
        """The run's ``Checkpoint`` to go on from: the one kept when the run stopped before its
        end, else a fresh one (a finished run starts over; its unchanged orders cost nothing)."""
        with self._transaction() as session:
            row = session.get(BackfillRow, run_key)
            if row is not None and row.finished_at is None:
                return Checkpoint.of(row)
            if row is None:
                row = BackfillRow(run_key=run_key)
                session.add(row)
            row.store_key, row.since, row.until = store_key, naive_utc(since), naive_utc(until)
            row.cursor_updated_at = row.cursor_entity_id = row.finished_at = None
            row.scanned = row.to_sync = row.synced = row.failed = 0
            row.started_at = utcnow()
            session.flush()
            return Checkpoint.of(row)

    def save_backfill(self, run_key, cursor, counts, finished=False):
        """Keep where run ``run_key`` stands: ``cursor`` (``(updated_at, entity_id)``, None to
        keep the last) and ``counts`` (``scanned``, ``to_sync``, ``synced``, ``failed``).

        ``finished`` ends the run, and prunes the checkpoints of the store's older runs that
        lie within its range (what they had left to do, this run did)."""
        with self._transaction() as session:
            row = session.get(BackfillRow, run_key)
            if row is None:
                raise KeyError(f"no backfill run {run_key}")
            if cursor is not None:
                row.cursor_updated_at, row.cursor_entity_id = naive_utc(cursor[0]), cursor[1]
            for name in ("scanned", "to_sync", "synced", "failed"):
                if name in counts:
                    setattr(row, name, counts[name])
            if finished:
                row.finished_at = utcnow()
                self._prune_backfills(session, row)
            return Checkpoint.of(row)

    def _prune_backfills(self, session, row):
        older = select(BackfillRow).where(
            BackfillRow.store_key == row.store_key,
            BackfillRow.run_key != row.run_key,
            BackfillRow.started_at <= row.started_at,
            BackfillRow.since >= row.since,
        )
        for other in session.scalars(older).all():
            if row.until is None or (other.until is not None and other.until <= row.until):
                session.delete(other)

    def backfills(self, store_key=None):
        """Every kept ``Checkpoint`` (of one store), newest first."""
        with self._transaction() as session:
            query = select(BackfillRow).order_by(BackfillRow.started_at.desc())
            if store_key is not None:
                query = query.where(BackfillRow.store_key == store_key)
            return [Checkpoint.of(row) for row in session.scalars(query)]

    # -- reconciliation watermarks (``magsync.sync.reconcile``), one row per store ------------

    def watermark(self, store_key):
        """The store's ``Watermark``, or None when magsync never ran against it."""
        with self._transaction() as session:
            row = session.get(WatermarkRow, store_key)
            return Watermark.of(row) if row is not None else None

    def start_watermark(self, store_key, now=None):
        """The store's ``Watermark``, made with ``first_run_at`` = ``now`` (naive UTC, default
        the present) the first time; an existing one is returned unchanged."""
        for tries_left in (1, 0):
            try:
                with self._transaction() as session:
                    row = session.get(WatermarkRow, store_key)
                    if row is None:
                        row = WatermarkRow(store_key=store_key, first_run_at=now or utcnow())
                        session.add(row)
                        session.flush()
                    return Watermark.of(row)
            except LedgerUnavailable as exc:
                # Another clock made the row at the same moment: read it instead.
                if tries_left and isinstance(exc.__context__, IntegrityError):
                    continue
                raise

    def advance_watermark(self, store_key, updated_at, entity_id):
        """Move the store's watermark to (``updated_at``, ``entity_id``) if that is after it;
        True when it moved. Never moves it back (a slower pass that started earlier)."""
        with self._transaction() as session:
            row = session.get(WatermarkRow, store_key, with_for_update=True)
            if row is None:
                row = WatermarkRow(store_key=store_key, first_run_at=utcnow())
                session.add(row)
            new = (updated_at, entity_id or 0)
            if row.updated_at is not None and new <= (row.updated_at, row.entity_id or 0):
                return False
            row.updated_at, row.entity_id = updated_at, entity_id
            return True

    def set_watermark(self, store_key, updated_at):
        """Set the store's watermark to ``updated_at`` (naive UTC) by hand, back or forth: the
        next pass reads the orders updated since then (less the overlap)."""
        with self._transaction() as session:
            row = session.get(WatermarkRow, store_key, with_for_update=True)
            if row is None:
                row = WatermarkRow(store_key=store_key, first_run_at=utcnow())
                session.add(row)
            row.updated_at, row.entity_id = updated_at, None
            session.flush()
            return Watermark.of(row)

    def claim_missed_alert(self, store_key, now, interval):
        """True for the one caller (of all processes) whose claim of the store's missed-webhooks
        alert comes ``interval`` seconds or more after the last; ``now`` is naive UTC. The
        store's watermark must exist (a pass makes it first)."""
        cutoff = now - dt.timedelta(seconds=interval)
        with self._transaction() as session:
            claimed = session.execute(
                update(WatermarkRow)
                .where(
                    WatermarkRow.store_key == store_key,
                    or_(
                        WatermarkRow.missed_alert_at.is_(None),
                        WatermarkRow.missed_alert_at <= cutoff,
                    ),
                )
                .values(missed_alert_at=now)
            )
            return claimed.rowcount == 1

    # -- the org's API usage (``magsync.sync.pacing``), one row shared by every worker ----------

    def api_usage(self):
        """The shared ``SharedUsage``."""
        with self._transaction() as session:
            return SharedUsage.of(self._usage_row(session))

    def share_api_usage(self, used, limit, observed_at, halt):
        """Keep ``used`` of ``limit``, seen at ``observed_at`` (naive UTC), unless a figure seen
        later is kept already; then follow the halt episode.

        Returns ``"halted"`` when this call moved the kept usage to ``halt`` (a fraction of the
        limit) or past it, so that its caller reports the episode; ``"resumed"`` when it moved
        it back under; None otherwise. The row is locked for the transaction, so of processes
        sharing at the same moment exactly one sees each change.
        """
        with self._transaction() as session:
            row = self._usage_row(session, lock=True)
            if row.observed_at is None or observed_at >= row.observed_at:
                row.used, row.api_limit, row.observed_at = used, limit, observed_at
            fraction = row.used / row.api_limit if row.api_limit > 0 else 1.0
            if fraction >= halt and row.halted_since is None:
                row.halted_since = utcnow()
                return "halted"
            if fraction < halt and row.halted_since is not None:
                row.halted_since = None
                return "resumed"
            return None

    def claim_api_probe(self, now, interval):
        """True for the one caller (of all processes) whose claim comes ``interval`` seconds or
        more after the last one; ``now`` is naive UTC."""
        cutoff = now - dt.timedelta(seconds=interval)
        with self._transaction() as session:
            self._usage_row(session)
            claimed = session.execute(
                update(ApiUsageRow)
                .where(
                    ApiUsageRow.id == 1,
                    or_(ApiUsageRow.probe_at.is_(None), ApiUsageRow.probe_at <= cutoff),
                )
                .values(probe_at=now)
            )
            return claimed.rowcount == 1

    def _usage_row(self, session, lock=False):
        row = session.get(ApiUsageRow, 1, with_for_update=lock)
        if row is None:  # made by the migration; a database restored without it gets it back
            row = ApiUsageRow(id=1)
            session.add(row)
            session.flush()
        return row
