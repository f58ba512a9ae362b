"""RabbitMQ topology and durable publishing.

Names derive from ``MAGSYNC_BROKER_NAMESPACE`` (default ``magsync``):

- exchange ``magsync`` (topic, durable): where order tasks are published;
- queue ``magsync.orders`` (quorum, durable), bound with routing key ``magsync.orders``. Quorum
  queues replicate, count redeliveries (a poison message that keeps killing workers is
  dead-lettered after ``MAGSYNC_DELIVERY_LIMIT`` deliveries instead of looping forever), and let
  Celery park retry delays in the broker (native delayed delivery needs a topic exchange);
- queue ``magsync.backfill`` (quorum, durable, the same dead-lettering), bound with routing key
  ``magsync.backfill``: the orders ``magsync backfill`` publishes (task
  ``magsync.backfill_order``), consumed by a worker of their own so that live orders never wait
  behind history;
- exchange ``magsync.dead`` (topic) and queue ``magsync.dead`` (quorum): the dead letters.
  The work queue names ``magsync.dead`` as its dead-letter exchange with the at-least-once
  strategy, so a rejected message is kept until the dead-letter queue has confirmed it.

``Topology.declare`` declares the dead-letter side first: RabbitMQ drops a message dead-lettered
to an exchange that does not exist.

Every publish magsync makes through kombu (a replay, a dead letter by a worker, an order on a
broker other than RabbitMQ) goes through ``publish_confirmed``: it returns once the broker
confirmed the message, and any failure of the broker is ``BrokerUnavailable``. The web process
publishes orders on RabbitMQ through ``group_commit.GroupCommitPublisher``, under the same
contract, with one confirm wait for all the messages its request threads hand it at once.
"""

import logging
import threading
from dataclasses import dataclass

from amqp.exceptions import AMQPError, MessageNacked
from kombu import Connection, Exchange, Queue
from kombu.exceptions import KombuError

log = logging.getLogger(__name__)

SYNC_ORDER_TASK = "magsync.sync_order"
BACKFILL_ORDER_TASK = "magsync.backfill_order"
DEFAULT_DELIVERY_LIMIT = 20
# An order's publish: Magento (or the operator replaying) waits on it, so one quick retry only.
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}


def task_argsrepr(event):
    """What Flower and the worker's log show of a task: short, and none of the buyer's details."""
    return f"order {event.get('increment_id')} (entity {event.get('entity_id')})"


class BrokerUnavailable(Exception):
    """The broker did not accept and confirm the message in time."""


# What a publish raises when the broker did not take the message: kombu's errors, the socket's
# (a confirm that never arrives is a socket timeout), and py-amqp's own, some of which derive
# from neither (a channel error such as NOT_FOUND, a nack).
BROKER_ERRORS = (KombuError, OSError, AMQPError, MessageNacked)


def publish_confirmed(send, timeout, retry_policy):
    """Call ``send(**options)``, a publish on a confirming channel, and return what it returns.

    ``send`` is ``Producer.publish`` or ``Celery.send_task`` with the message bound; it receives
    the retry and confirm options: up to ``retry_policy`` retries on a fresh connection, each
    attempt bounded by ``timeout`` seconds, the broker's confirm awaited as long. Returns only
    once the broker confirmed; raises ``BrokerUnavailable`` (the cause chained) otherwise.
    """
    try:
        return send(
            retry=True,
            retry_policy=retry_policy,
            timeout=timeout,
            confirm_timeout=timeout,
        )
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class Topology:
    """The exchanges and queues of one namespace."""

    namespace: str = "magsync"
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT

    @property
    def exchange(self):
        return Exchange(self.namespace, type="topic", durable=True)

    @property
    def dead_exchange(self):
        return Exchange(f"{self.namespace}.dead", type="topic", durable=True)

    @property
    def work_routing_key(self):
        return f"{self.namespace}.orders"

    @property
    def work_queue(self):
        return self._quorum_queue(self.work_routing_key)

    @property
    def backfill_routing_key(self):
        return f"{self.namespace}.backfill"

    @property
    def backfill_queue(self):
        return self._quorum_queue(self.backfill_routing_key)

    @property
    def work_queues(self):
        """The queues workers consume: live orders, then backfilled ones."""
        return [self.work_queue, self.backfill_queue]

    def _quorum_queue(self, name):
        return Queue(
            name,
            self.exchange,
            routing_key=name,
            durable=True,
            queue_arguments={
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": self.dead_exchange.name,
                "x-dead-letter-routing-key": f"{self.namespace}.dead",
                "x-dead-letter-strategy": "at-least-once",
                # at-least-once dead-lettering requires reject-publish overflow.
                "x-overflow": "reject-publish",
                "x-delivery-limit": self.delivery_limit,
            },
        )

    @property
    def dead_queue(self):
        return Queue(
            f"{self.namespace}.dead",
            self.dead_exchange,
            routing_key="#",
            durable=True,
            queue_arguments={"x-queue-type": "quorum"},
        )

    def declare(self, connection):
        """Declare everything on ``connection``, the dead-letter side first."""
        channel = connection.default_channel
        for entity in (self.dead_exchange, self.dead_queue, self.exchange, *self.work_queues):
            entity.bind(channel).declare()


def broker_transport_options(settings):
    """Transport options for the configured broker (confirms on RabbitMQ, folders otherwise)."""
    if settings.broker_is_rabbitmq:
        return {"confirm_publish": True}
    if settings.broker_url.startswith("filesystem://"):
        folder = settings.broker_folder
        return {
            "data_folder_in": f"{folder}/queue",
            "data_folder_out": f"{folder}/queue",
            "processed_folder": f"{folder}/processed",
            "control_folder": f"{folder}/control",
            "store_processed": False,
        }
    return {}


def declare_topology(celery_app, topology, timeout):
    """Declare ``topology`` on the app's broker now; False (with a warning) when the broker
    cannot be reached within ``timeout`` or is not RabbitMQ."""
    if not celery_app.conf.broker_url.startswith(("amqp", "pyamqp")):
        return False
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
            topology.declare(conn)
    except BROKER_ERRORS as exc:
        log.warning(
            "broker not reachable at start-up; topology declared on first publish",
            extra={"cause": f"{type(exc).__name__}: {exc}"},
        )
        return False
    return True


class Publisher:
    """Publishes sync tasks and returns only once the broker confirmed them, one at a time.

    Any broker Celery supports; the web process uses ``GroupCommitPublisher`` on RabbitMQ.

    Thread-safe: each thread keeps its own connection (gunicorn threads publish in parallel),
    replaced after any failure, whose channel state is then unknown. The first publish on a new
    connection also declares the topology, so the web process starts while the broker is down.
    """

    def __init__(self, celery_app, topology, timeout, *, backfill=False):
        self.celery = celery_app
        self.topology = topology
        self.timeout = timeout
        # ``backfill``: ``magsync.backfill_order`` tasks on the backfill queue.
        self._task_name = BACKFILL_ORDER_TASK if backfill else SYNC_ORDER_TASK
        self._queue = topology.backfill_queue if backfill else topology.work_queue
        self._local = threading.local()
        self._connections = set()
        self._lock = threading.Lock()

    def _producer(self):
        producer = getattr(self._local, "producer", None)
        if producer is not None:
            return producer
        conn = self.celery.connection_for_write()
        with self._lock:
            self._connections.add(conn)
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=self.timeout)
        if self.celery.conf.broker_url.startswith(("amqp", "pyamqp")):
            self.topology.declare(conn)
        producer = self._local.producer = conn.Producer()
        return producer

    def declare_now(self):
        """Declare the topology at start-up (best effort: a broker that is down is not fatal
        here; every new connection declares it again before its first publish)."""
        return declare_topology(self.celery, self.topology, self.timeout)

    def _discard(self):
        producer = getattr(self._local, "producer", None)
        self._local.producer = None
        if producer is not None:
            self._close(producer.connection)

    def _close(self, conn):
        with self._lock:
            self._connections.discard(conn)
        try:
            conn.close()
        except Exception:
            log.debug("closing a broker connection failed", exc_info=True)

    def publish(self, event, task_id):
        """Enqueue ``magsync.sync_order(event)``; raise ``BrokerUnavailable`` if not confirmed."""

        def send(**confirm):
            self.celery.send_task(
                self._task_name,
                args=[event],
                task_id=task_id,
                argsrepr=task_argsrepr(event),
                kwargsrepr="{}",
                producer=self._producer(),
                queue=self._queue,
                routing_key=self._queue.routing_key,
                **confirm,
            )

        try:
            publish_confirmed(send, self.timeout, PUBLISH_RETRY_POLICY)
        except BrokerUnavailable:
            self._discard()  # the connection's channel state is unknown after a failure
            raise
        return task_id

    def publish_all(self, events):
        """Enqueue each ``(event, task_id)`` in turn; returns the task ids once all are
        confirmed, raises ``BrokerUnavailable`` at the first that is not."""
        return [self.publish(event, task_id) for event, task_id in events]

    def close(self):
        """Close every connection this publisher opened."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            self._close(conn)
        self._local = threading.local()


def broker_reachable(url, timeout=2.0, transport_options=None):
    """True when a connection to the broker can be opened within ``timeout`` seconds."""
    try:
        with Connection(url, connect_timeout=timeout, transport_options=transport_options) as c:
            c.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        return True
    except BROKER_ERRORS:
        return False


def consumers(celery_app, queue, timeout):
    """How many consumers ``queue`` has (0 when it does not exist yet); None when the broker
    cannot tell (not RabbitMQ, or unreachable within ``timeout``)."""
    if not celery_app.conf.broker_url.startswith(("amqp", "pyamqp")):
        return None
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
            try:
                _, _, count = conn.default_channel.queue_declare(queue.name, passive=True)
            except conn.channel_errors:
                return 0
            return count
    except BROKER_ERRORS:
        return None
