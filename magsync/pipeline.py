"""One order event through the pipeline: fetch the truth, map it, upsert it.

``sync_order(event, services)`` is a plain function (the Celery task is a thin shell around it),
so it is tested without a broker. It raises the outcomes of ``magsync.errors``; the caller
decides what retrying or dead-lettering means.
"""

import logging
import os
import threading
from dataclasses import dataclass

from magsync.mapping.opportunity import opportunity_record
from magsync.mapping.order import load_order
from magsync.sinks.salesforce.auth import TokenProvider
from magsync.sinks.salesforce.writer import SalesforceWriter, build_session
from magsync.sources.magento_rest import MagentoClient

log = logging.getLogger(__name__)


@dataclass
class Services:
    """What a worker process needs to sync orders; built once per process."""

    settings: object
    writer: SalesforceWriter
    magento: MagentoClient | None

    @classmethod
    def build(cls, settings):
        session = build_session(settings)
        tokens = TokenProvider(settings, session)
        magento = MagentoClient(settings) if settings.magento_rest_enabled else None
        return cls(settings, SalesforceWriter(settings, tokens, session), magento)


_services = {}
_services_lock = threading.Lock()


def services_for(settings):
    """The current process's ``Services`` (forked worker children build their own)."""
    key = (os.getpid(), id(settings))
    with _services_lock:
        if key not in _services:
            _services[key] = Services.build(settings)
        return _services[key]


def sync_order(event, services):
    """Sync the order an event names; returns what was written (for logs and Flower)."""
    if services.magento is not None:
        document = services.magento.get_order(event["entity_id"])
        source = "rest"
    else:
        document = event["order"]
        source = "webhook"
    order = load_order(document)
    record = opportunity_record(order, services.settings)
    [result] = services.writer.upsert([record])
    if not result.ok:
        raise result.error
    # Keys of ``extra`` must not collide with LogRecord attributes ("created", "name", ...).
    summary = {
        "order": order.increment_id,
        "sf_id": result.id,
        "sf_created": result.created,
        "updated_at": order.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
        "state": order.state,
        "source": source,
    }
    log.info("opportunity upserted", extra={**summary, "api_usage": services.writer.last_api_usage})
    return summary


def note_outcome(event, services, kind, error=None, attempt=None):
    """Record what became of an event that did not sync: ``retried`` or ``dead_lettered``.

    Called by the task shell, which decides retries and dead letters.
    """
    log.info(
        "order event outcome",
        extra={
            "order": event.get("increment_id"),
            "outcome": kind,
            "reason": getattr(error, "reason", None),
            "attempt": attempt,
        },
    )
