"""Dead letters: orders set aside with the reason, and what an operator does with them.

Two kinds of message reach the ``<namespace>.dead`` queue:

- put there by a worker (``DeadLetters.put``) when an order failed permanently or ran out of
  retries: a JSON document with the original task (name, id, arguments, headers) and the reason
  (error class, Salesforce ``errorCode``/message/fields, attempts, first and last failure time);
- dead-lettered by RabbitMQ itself (a message rejected without requeue, or redelivered more than
  the queue's delivery limit, e.g. one that keeps killing workers): the original Celery message,
  with RabbitMQ's ``x-death`` header as the reason.

``browse`` reads without removing (messages are fetched unacknowledged and returned to the queue
when the channel closes); ``replay`` re-publishes onto the work queue and removes a dead letter
only once the broker confirmed the re-publish; ``purge`` empties the queue.
"""

import datetime as dt
import json
import logging
from dataclasses import dataclass
from types import SimpleNamespace

from magsync import redact
from magsync.messaging.broker import (
    BACKFILL_ORDER_TASK,
    SYNC_ORDER_TASK,
    BrokerUnavailable,
    Publisher,
    publish_confirmed,
    task_argsrepr,
)

log = logging.getLogger(__name__)

FORMAT = "magsync.dead-letter/1"
# More patient than the web process's publish (no one waits on a worker's answer): a dead letter
# that is not confirmed falls back to the broker's own dead-lettering, which keeps no reason.
PUT_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.5, "interval_step": 1}


def _iso(timestamp):
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Letter:
    """One dead letter as read from the queue."""

    id: str
    task: str
    args: list
    kwargs: dict
    headers: dict
    reason: dict
    source: str  # "worker" or "broker"
    message: object = None  # the kombu message while it is held

    @property
    def event(self):
        return _event(self.args)

    @property
    def order(self):
        return self.event.get("increment_id")

    @property
    def code(self):
        """The reason's short code (``REQUIRED_FIELD_MISSING``, ``delivery_limit``, ...)."""
        return self.reason.get("reason") or "unknown"

    def summary(self):
        """The dead letter in brief, for listings: secrets and buyer data redacted (by the
        letter's own order's values and by pattern); ``describe`` keeps everything."""
        with redact.buyer(self.event.get("order")):
            return redact.redact_data(
                {
                    "id": self.id,
                    "order": self.order,
                    "reason": self.code,
                    "error": self.reason.get("error"),
                    "message": self.reason.get("message"),
                    "attempts": self.reason.get("attempts"),
                    "first_failed_at": self.reason.get("first_failed_at"),
                    "last_failed_at": self.reason.get("last_failed_at"),
                    "source": self.source,
                }
            )

    def describe(self):
        """Everything kept with the dead letter: the reason and the original task."""
        return {
            "id": self.id,
            "order": self.order,
            "source": self.source,
            "reason": self.reason,
            "task": self.task,
            "args": self.args,
            "kwargs": self.kwargs,
            "headers": self.headers,
        }


def parse(message):
    """A ``Letter`` from a message of the dead-letter queue, whichever kind it is."""
    headers = dict(message.headers or {})
    if headers.get("x-magsync-format") == FORMAT:
        document = json.loads(message.body)
        return Letter(
            id=document["id"],
            task=document["task"],
            args=document["args"],
            kwargs=document.get("kwargs") or {},
            headers=document.get("headers") or {},
            reason=document["reason"],
            source="worker",
            message=message,
        )
    # Dead-lettered by RabbitMQ: a Celery protocol-2 message, [args, kwargs, embed].
    try:
        args, kwargs, _embed = json.loads(message.body)
    except (ValueError, TypeError):
        args, kwargs = [], {}
    deaths = headers.get("x-death") or [{}]
    death = deaths[0]
    reason = {
        "reason": death.get("reason") or headers.get("x-first-death-reason") or "unknown",
        "error": "BrokerDeadLetter",
        "message": f"dead-lettered by RabbitMQ from {death.get('queue')}",
        "attempts": headers.get("x-delivery-count"),
        "last_failed_at": _iso(death["time"].timestamp()) if "time" in death else None,
    }
    safe_headers = {k: v for k, v in headers.items() if not k.startswith("x-death")}
    return Letter(
        id=headers.get("id") or message.properties.get("correlation_id") or "?",
        task=headers.get("task") or SYNC_ORDER_TASK,
        args=args,
        kwargs=kwargs,
        headers=json.loads(json.dumps(safe_headers, default=str)),
        reason=reason,
        source="broker",
        message=message,
    )


def _event(args):
    return args[0] if args and isinstance(args[0], dict) else {}


def letter_document(request, reason):
    """The JSON document a worker's dead letter carries: the task ``request`` and ``reason``."""
    return {
        "format": FORMAT,
        "id": request.id,
        "task": request.task,
        "args": list(request.args or []),
        "kwargs": dict(request.kwargs or {}),
        "headers": {
            "argsrepr": getattr(request, "argsrepr", None),
            "origin": getattr(request, "origin", None),
            "retries": request.retries,
            "delivery_info": {
                k: v
                for k, v in (request.delivery_info or {}).items()
                if k in ("exchange", "routing_key", "redelivered")
            },
        },
        "reason": reason,
    }


class DeadLetters:
    """The dead-letter queue of one namespace."""

    def __init__(self, celery_app, topology, timeout=5.0):
        self.celery = celery_app
        self.topology = topology
        self.timeout = timeout

    # -- writing (workers) ----------------------------------------------------------------------

    def put(self, request, error, attempts, first_failed_at, last_failed_at):
        """Publish a dead letter for the task ``request`` and wait for the broker's confirm.

        Returns the reason recorded with it. Raises ``BrokerUnavailable`` when it is not
        confirmed: the caller must then keep the original message (reject it to the broker's own
        dead-lettering, or requeue it).
        """
        reason = {
            **error.describe(),
            "attempts": attempts,
            "first_failed_at": _iso(first_failed_at),
            "last_failed_at": _iso(last_failed_at),
        }
        document = letter_document(request, reason)
        topology = self.topology
        headers = {
            "x-magsync-format": FORMAT,
            "x-magsync-order": str(_event(document["args"]).get("increment_id")),
            "x-magsync-reason": str(error.reason),
        }

        def send(**confirm):
            with self.celery.producer_or_acquire() as producer:
                producer.publish(
                    json.dumps(document, default=str),
                    exchange=topology.dead_exchange,
                    routing_key=f"{topology.namespace}.dead",
                    declare=[topology.dead_queue],
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=2,
                    headers=headers,
                    **confirm,
                )

        publish_confirmed(send, self.timeout, PUT_RETRY_POLICY)
        return reason

    def put_order(self, event, task_id, error, now, task=BACKFILL_ORDER_TASK):
        """Dead-letter the order ``event`` that no task carried (a row a Bulk API job failed),
        as its task would have been: replayable like any other. Returns the reason recorded;
        raises ``BrokerUnavailable`` when it is not confirmed."""
        request = SimpleNamespace(
            id=task_id,
            task=task,
            args=[event],
            kwargs={},
            retries=0,
            delivery_info={},
            argsrepr=task_argsrepr(event),
            origin=None,
        )
        return self.put(request, error, 1, now, now)

    # -- operations -----------------------------------------------------------------------------

    def _connection(self):
        return self.celery.connection_for_write()

    def browse(self, limit=None, handle=None):
        """Read up to ``limit`` dead letters without removing them.

        With ``handle(letter, channel)`` each letter is passed while still held; the handler may
        ``letter.message.ack()`` it. Everything not acknowledged returns to the queue.
        """
        letters = []
        with self._connection() as conn:
            channel = conn.channel()
            try:
                queue = self.topology.dead_queue(channel)
                while limit is None or len(letters) < limit:
                    message = queue.get(no_ack=False, accept=["application/json"])
                    if message is None:
                        break
                    letter = parse(message)
                    if handle is not None:
                        handle(letter, channel)
                    letters.append(letter)
            finally:
                # Closing the channel hands every unacknowledged message back to the queue.
                channel.close()
        return letters

    def replay(self, select, publisher=None):
        """Put the dead letters ``select(letter)`` picks back on the work queue; returns them.

        A backfilled order's dead letter is replayed as a live order's (the operator waits on it).

        Each is re-published (by ``publisher``, default one on this broker) with a fresh retry
        budget, and removed from the dead-letter queue only after the re-publish was confirmed.
        """
        own = publisher is None
        publisher = publisher or Publisher(self.celery, self.topology, self.timeout)
        replayed = []

        def handle(letter, channel):
            if not select(letter):
                return
            if letter.task not in (SYNC_ORDER_TASK, BACKFILL_ORDER_TASK) or not letter.event:
                log.warning("dead letter cannot be replayed", extra={"letter": letter.id})
                return
            try:
                publisher.publish(letter.event, letter.id)
            except BrokerUnavailable:
                log.error("replay not confirmed; dead letter kept", extra={"letter": letter.id})
                return
            letter.message.ack()
            replayed.append(letter)

        try:
            self.browse(handle=handle)
        finally:
            if own:
                publisher.close()
        return replayed

    def purge(self):
        """Delete every dead letter; returns how many there were."""
        with self._connection() as conn:
            return self.topology.dead_queue(conn.default_channel).purge() or 0
