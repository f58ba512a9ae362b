"""The Celery application: RabbitMQ, JSON only, late acks, one task at a time per process."""

import logging

from celery import Celery, Task, bootsteps

from magsync import tasks
from magsync.broker import SYNC_ORDER_TASK, Topology, broker_transport_options

log = logging.getLogger(__name__)


class DeclareTopology(bootsteps.StartStopStep):
    """Declare the dead-letter side and the work queue each time the consumer (re)connects."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, c):
        topology = c.app.magsync_topology
        if c.app.conf.broker_url.startswith(("amqp", "pyamqp")):
            topology.declare(c.connection)
            log.info("broker topology declared", extra={"namespace": topology.namespace})


def create_celery(settings, flask_app=None):
    """A Celery app configured from ``settings``, its tasks run inside ``flask_app``'s context."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            if flask_app is None:
                return self.run(*args, **kwargs)
            with flask_app.app_context():
                return self.run(*args, **kwargs)

    topology = Topology(settings.broker_namespace, settings.delivery_limit)
    celery = Celery("magsync", task_cls=FlaskTask)
    celery.magsync_topology = topology
    celery.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options=broker_transport_options(settings),
        broker_connection_timeout=settings.publish_timeout,
        broker_connection_retry_on_startup=True,
        broker_heartbeat=60,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A failed task's message is rejected to the dead-letter exchange unless the task
        # says otherwise (magsync.sync_order dead-letters explicitly, then acknowledges).
        task_acks_on_failure=False,
        task_acks_on_timeout=False,
        task_time_limit=600,
        task_soft_time_limit=540,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_queues=[topology.work_queue],
        task_default_queue=topology.work_queue.name,
        task_default_exchange=topology.exchange.name,
        task_default_exchange_type="topic",
        task_default_routing_key=topology.work_routing_key,
        task_create_missing_queues=False,
        task_annotations={SYNC_ORDER_TASK: {"rate_limit": settings.salesforce_rate_limit}},
        broker_native_delayed_delivery_queue_type="quorum",
    )
    celery.steps["consumer"].add(DeclareTopology)
    tasks.register(celery, settings)
    return celery
