"""The worker's Celery app: the shared configuration, the topology boot step and the task."""

import logging
import sys

from celery import bootsteps, signals
from celery.events.dispatcher import EventDispatcher
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)

from magsync.messaging.app import create_celery
from magsync.worker import collector, pacing, reconcile, task

log = logging.getLogger(__name__)


class DeclareTopology(bootsteps.StartStopStep):
    """Declare the dead-letter side and the work queues each time the consumer (re)connects,
    and bind the work queues to Celery's delayed-delivery exchanges.

    Celery binds every queue it knows to those exchanges when its consumer starts, and gives up
    on one that does not exist yet (the backfill queue on a fresh broker, while only the live
    worker runs): a retry parked for it would reach no queue. Binding again once the queues
    exist closes that gap; both steps are idempotent.
    """

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, c):
        topology = c.app.magsync_topology
        if c.app.conf.broker_url.startswith(("amqp", "pyamqp")):
            topology.declare(c.connection)
            declare_native_delayed_delivery_exchanges_and_queues(
                c.connection, c.app.conf.broker_native_delayed_delivery_queue_type
            )
            for queue in topology.work_queues:
                bind_queue_to_native_delayed_delivery_exchange(c.connection, queue)
            log.info("broker topology declared", extra={"namespace": topology.namespace})


class LoopFlushedDispatcher(EventDispatcher):
    """Celery's event dispatcher whose task events only the worker's event loop publishes.

    On the thread pool, a thread that filled the buffer would publish the events itself and wait
    for RabbitMQ's confirm on the events connection, which the event loop also reads (for
    heartbeats): the loop can take the confirm, and the thread would wait forever, holding the
    dispatcher's lock that every other task needs. The prefork pool's events are always
    published by the loop; with this dispatcher the threads' are too (they only buffer them).
    """

    def __init__(self, *args, **kwargs):
        kwargs["buffer_limit"] = sys.maxsize
        super().__init__(*args, **kwargs)


def create_worker_app(settings):
    """The Celery app a worker runs: ``magsync.sync_order``, ``magsync.backfill_order`` and
    ``magsync.reconcile`` registered, topology declared, and the clock's schedule (``magsync
    clock`` runs beat on it).

    Builds nothing else but the Salesforce call rate the pool processes will share
    (``celery.magsync_rate``, see ``magsync.worker.pacing``, made here, before the pool forks):
    each worker process makes its own ``task.WorkerContext`` (breaker, pacers, dead-letter
    queue, clients) from ``celery.magsync_settings`` on its first task.

    A coalescing worker (``MAGSYNC_BATCH_SIZE`` > 1) runs Celery's thread pool with
    ``MAGSYNC_WORKER_THREADS`` threads and as many messages prefetched, so that many orders wait
    for a batch at once; otherwise the prefork pool runs one order per process, as the shared
    configuration says. A worker's main process tunes Python's garbage collector when it starts
    (``magsync.worker.collector``), before the pool forks.
    """
    celery = create_celery(settings)
    celery.conf.update(
        worker_pool=settings.worker_pool,
        worker_concurrency=settings.worker_pool_size,
        worker_prefetch_multiplier=1,
    )
    celery.events.dispatcher_cls = LoopFlushedDispatcher
    celery.magsync_settings = settings
    celery.magsync_rate = pacing.shared_rate(settings)
    celery.steps["consumer"].add(DeclareTopology)
    celery.task(**task.TASK_OPTIONS)(task.sync_order)
    celery.task(**task.BACKFILL_TASK_OPTIONS)(task.backfill_order)
    celery.task(**reconcile.TASK_OPTIONS)(reconcile.reconcile)
    # What the clock process (Celery beat on this app) sends: one reconcile pass an interval.
    celery.conf.beat_schedule = reconcile.beat_schedule(settings)
    # Once per process, whatever number of apps: the handler reads the worker's own app.
    signals.worker_init.connect(
        collector.on_worker_init, weak=False, dispatch_uid="magsync.worker.collector"
    )
    return celery
