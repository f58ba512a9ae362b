"""The ``magsync.reconcile`` task and its schedule: one reconcile pass, sent by the clock.

The clock process (``magsync clock``, Celery beat, one instance) sends the task every
``MAGSYNC_RECONCILE_INTERVAL`` seconds; a worker runs the pass (``magsync.sync.reconcile``)
and publishes what it finds to the live queue through its process's publisher (group commit on
RabbitMQ: one confirm wait per page). The task is a thin shell: it is acknowledged on receipt
(a lost pass is made up by the next one, never retried or dead-lettered), expires after one
interval (passes do not pile up while no worker runs), and a failed pass is logged with the
watermark left where it was.
"""

import datetime as dt
import logging
import os
import threading

from magsync.errors import SyncError
from magsync.messaging.broker import BrokerUnavailable, Publisher
from magsync.messaging.group_commit import GroupCommitPublisher
from magsync.settings import ConfigError
from magsync.sync.reconcile import run_pass
from magsync.worker.task import WorkerContext

log = logging.getLogger(__name__)

RECONCILE_TASK = "magsync.reconcile"

# How ``create_worker_app`` registers ``reconcile``.
TASK_OPTIONS = {
    "name": RECONCILE_TASK,
    "bind": True,
    "acks_late": False,
    "ignore_result": True,
    "throws": (SyncError, BrokerUnavailable),
}

_publishers_lock = threading.Lock()


def beat_schedule(settings):
    """The clock's schedule: one pass every ``MAGSYNC_RECONCILE_INTERVAL`` seconds (empty when
    reconciliation is off)."""
    if not settings.reconcile_enabled:
        return {}
    interval = settings.reconcile_interval
    return {
        "reconcile": {
            "task": RECONCILE_TASK,
            "schedule": dt.timedelta(seconds=interval),
            "options": {"expires": interval},
        }
    }


def publisher(app):
    """This process's publisher of reconciled orders (made on first use, again after a fork)."""
    with _publishers_lock:
        made = getattr(app, "magsync_reconcile_publisher", None)
        if made is None or made[0] != os.getpid():
            settings, topology = app.magsync_settings, app.magsync_topology
            kind = GroupCommitPublisher if settings.broker_is_rabbitmq else Publisher
            made = (os.getpid(), kind(app, topology, settings.publish_timeout))
            app.magsync_reconcile_publisher = made
        return made[1]


def reconcile(task):
    """Run one reconcile pass; returns its summary (or why it did not run)."""
    context = WorkerContext.of(task.app)
    if not context.settings.reconcile_enabled:
        log.warning("reconcile task ignored: reconciliation is off in this worker's settings")
        return {"skipped": "off"}
    try:
        result = run_pass(context.services(), publisher(task.app).publish_all)
    except (SyncError, BrokerUnavailable, ConfigError) as exc:
        log.warning(
            "reconcile pass failed; the watermark stays and the next pass reads the same orders",
            extra={"reason": getattr(exc, "reason", type(exc).__name__), "error": str(exc)},
        )
        return {"failed": getattr(exc, "reason", type(exc).__name__)}
    return result.summary()
