"""The broker check: RabbitMQ accepts a connection, and magsync's exchanges and queues, where they
exist, are declared as magsync declares them.

Each entity is first declared passively: a missing one is fine (the web and worker processes
declare them when they start). An existing one is then declared with magsync's arguments, which
RabbitMQ refuses with PRECONDITION_FAILED when the existing entity differs (a classic queue where
a quorum queue belongs, another dead-letter exchange or delivery limit); the check never creates
anything.
"""

import contextlib

from amqp.exceptions import NotFound, PreconditionFailed
from kombu import Connection, Queue
from kombu.exceptions import KombuError

from magsync.check.report import Finding
from magsync.messaging.broker import Topology, broker_transport_options
from magsync.settings import mask_url


def _kind(entity):
    return "queue" if isinstance(entity, Queue) else "exchange"


def _declare(connection, entity, passive):
    channel = connection.channel()
    try:
        bound = entity.bind(channel)
        if isinstance(entity, Queue):
            return bound.queue_declare(passive=passive)
        return bound.declare(passive=passive)
    finally:
        with contextlib.suppress(Exception):
            channel.close()


def _probe(connection, entity, namespace):
    subject = f"{_kind(entity)} {entity.name}"
    try:
        found = _declare(connection, entity, passive=True)
    except NotFound:
        return Finding.ok(
            subject, "not declared yet; the web and worker processes declare it when they start"
        )
    try:
        _declare(connection, entity, passive=False)
    except PreconditionFailed as exc:
        return Finding.fail(
            subject,
            f"exists, declared differently from what magsync declares ({exc.reply_text})",
            "move its messages elsewhere and delete it (the processes declare it again), or "
            f"give magsync a fresh MAGSYNC_BROKER_NAMESPACE (now {namespace})",
        )
    if isinstance(entity, Queue):
        kind = (entity.queue_arguments or {}).get("x-queue-type", "classic")
        return Finding.ok(
            subject,
            f"{kind} queue as expected ({found.message_count} messages ready, "
            f"{found.consumer_count} consumers)",
        )
    return Finding.ok(subject, f"{entity.type} exchange as expected")


def check_broker(ctx):
    settings = ctx.settings
    shown = mask_url(settings.broker_url)
    if not settings.broker_is_rabbitmq:
        yield Finding.skip(shown, "not RabbitMQ: queues and dead letters are not checked")
        return
    connection = ctx.resource(
        "broker",
        lambda: Connection(
            settings.broker_url,
            connect_timeout=settings.publish_timeout,
            transport_options=broker_transport_options(settings),
        ),
    )
    try:
        connection.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=settings.publish_timeout
        )
    except (*connection.connection_errors, KombuError, TimeoutError) as exc:
        yield Finding.fail(
            shown,
            f"RabbitMQ refused the connection or did not answer ({type(exc).__name__})",
            "start RabbitMQ, or correct CELERY_BROKER_URL (host, port, virtual host, user and "
            "password); the web process answers 503 and Magento retries while it is away",
        )
        return
    yield Finding.ok(shown, "RabbitMQ accepts the connection")
    topology = Topology(settings.broker_namespace, settings.delivery_limit)
    # The dead-letter side first, as the processes declare it.
    for entity in (
        topology.dead_exchange,
        topology.dead_queue,
        topology.exchange,
        topology.work_queue,
        topology.backfill_queue,
    ):
        yield _probe(connection, entity, settings.broker_namespace)
