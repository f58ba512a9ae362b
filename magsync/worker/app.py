"""The worker's Celery app: the shared configuration, the topology boot step and the task."""

import logging

from celery import bootsteps

from magsync.messaging.app import create_celery
from magsync.worker import pacing, task

log = logging.getLogger(__name__)


class DeclareTopology(bootsteps.StartStopStep):
    """Declare the dead-letter side and the work queue each time the consumer (re)connects."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, c):
        topology = c.app.magsync_topology
        if c.app.conf.broker_url.startswith(("amqp", "pyamqp")):
            topology.declare(c.connection)
            log.info("broker topology declared", extra={"namespace": topology.namespace})


def create_worker_app(settings):
    """The Celery app a worker runs: ``magsync.sync_order`` registered, topology declared.

    Builds nothing else but the Salesforce call rate the pool processes will share
    (``celery.magsync_rate``, see ``magsync.worker.pacing``, made here, before the pool forks):
    each worker process makes its own ``task.WorkerContext`` (breaker, pacers, dead-letter
    queue, clients) from ``celery.magsync_settings`` on its first task.
    """
    celery = create_celery(settings)
    celery.magsync_settings = settings
    celery.magsync_rate = pacing.shared_rate(settings)
    celery.steps["consumer"].add(DeclareTopology)
    celery.task(**task.TASK_OPTIONS)(task.sync_order)
    return celery
