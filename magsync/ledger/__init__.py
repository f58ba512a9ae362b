"""The sync ledger: what magsync has applied to Salesforce, order by order.

For each order it keeps the Magento entity id, increment id and store, the last applied
``updated_at`` and the hash of the fields written for it, the Salesforce ids (Opportunity or
Lead, Account, Contact, contact role), the sync status, attempts and last error, and times; for
each buyer (by email) the Account and Contact; the org's daily API usage as the newest answer
any worker saw reported it (``magsync.sync.pacing``); and for each order a history of events:

- ``received``: an event reached the pipeline (``source`` webhook, rest, reconcile, backfill or
  bulk);
- ``skipped_stale``: its ``updated_at`` was older than the last applied version;
- ``skipped_unchanged``: it would have written exactly what Salesforce already holds;
- ``skipped_duplicate``: its event id was applied already (a sender's redelivery), so neither
  Magento nor Salesforce was asked;
- ``skipped_superseded``: a newer version of the order came in the same batch and was applied
  instead (recorded once that one was);
- ``synced``: Salesforce confirmed the write (the record id, API calls it took);
- ``retried`` / ``dead_lettered``: the outcome of a failed attempt;
- ``replaced``: an admin edit replaced the order (its Opportunity is closed).

SQLite by default (one host), PostgreSQL through ``DATABASE_URL`` (any number of hosts). Its
schema is migrated with alembic (``magsync db upgrade``); ``magsync trace <increment_id>`` prints
one order's row and history. Per store (base URL and store code) it keeps the reconciliation
watermark: when magsync first ran against the store and the newest order a reconcile pass saw
with every publish confirmed (``Watermark``). ``locks.py`` serialises the events of one order
(and the first orders of one buyer, and the reconcile passes of one store) across workers.
"""

from magsync.ledger.locks import LockName, LockTimeout
from magsync.ledger.store import (
    Applied,
    Checkpoint,
    Customer,
    Ledger,
    LedgerUnavailable,
    OrderState,
    Version,
    Watermark,
)

EVENT_KINDS = (
    "received",
    "skipped_stale",
    "skipped_unchanged",
    "skipped_duplicate",
    "skipped_superseded",
    "synced",
    "retried",
    "dead_lettered",
    "replaced",
)

__all__ = [
    "EVENT_KINDS",
    "Applied",
    "Checkpoint",
    "Customer",
    "Ledger",
    "LedgerUnavailable",
    "LockName",
    "LockTimeout",
    "OrderState",
    "Version",
    "Watermark",
]
