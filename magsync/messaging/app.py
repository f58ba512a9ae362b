"""The Celery app both processes share: RabbitMQ, JSON only, late acks, one task at a time.

``create_celery(settings)`` configures the broker, serialisation and delivery and registers no
task: the web process publishes ``magsync.sync_order`` by name and never imports the worker;
``magsync.worker.app`` adds the task and the worker's boot steps to the same configuration.
"""

from celery import Celery

from magsync.messaging.broker import BACKFILL_ORDER_TASK, Topology, broker_transport_options


def create_celery(settings):
    """A Celery app configured from ``settings``, without tasks (``celery.magsync_topology``)."""
    topology = Topology(settings.broker_namespace, settings.delivery_limit)
    celery = Celery("magsync")
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
        # A worker consumes what ``--queues`` names (``magsync worker`` the live queue unless
        # told otherwise); backfilled orders are routed to their own queue.
        task_queues=topology.work_queues,
        task_routes=_routes(topology),
        task_default_queue=topology.work_queue.name,
        task_default_exchange=topology.exchange.name,
        task_default_exchange_type="topic",
        task_default_routing_key=topology.work_routing_key,
        task_create_missing_queues=False,
        # Live orders are paced per Salesforce call (magsync.salesforce.pacing), not per task
        # start. The backfill task also starts at most MAGSYNC_BACKFILL_RATE_LIMIT orders a
        # second per worker process, so that a backfill cannot outrun the org's allowance.
        task_annotations={BACKFILL_ORDER_TASK: {"rate_limit": settings.backfill_rate_limit}},
        # Remote-control commands (magsync rate-limit, Flower's) reach this namespace's workers
        # only: Celery's default control exchange is one for the whole virtual host.
        control_exchange=topology.namespace,
        broker_native_delayed_delivery_queue_type="quorum",
    )
    return celery


def _routes(topology):
    """Backfilled orders go to their own queue (the live one is the default)."""
    route = {"queue": topology.backfill_queue.name, "routing_key": topology.backfill_routing_key}
    return {BACKFILL_ORDER_TASK: route}
