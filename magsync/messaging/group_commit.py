"""Group-commit publishing: the web process's request threads share one confirming channel.

Each request waiting for its own publisher confirm on its own connection spends a broker round
trip (and RabbitMQ a disk sync) per webhook. Here one thread per process owns the connection:
request threads hand it their messages and wait; it publishes everything pending, waits once for
the broker's confirms (RabbitMQ confirms a run of messages with one ``basic.ack`` carrying
``multiple``), and wakes each request with the outcome of its own message. Messages that arrive
meanwhile form the next batch, so the busier the process, the larger the batches.

Outcomes are per message and exact: a request returns only once RabbitMQ confirmed its message;
a nack (of that message or a run covering it), a return (published ``mandatory``: a message no
queue would take is a failure, not silently dropped), a channel or connection error, or no
confirm before the request's deadline (``MAGSYNC_PUBLISH_TIMEOUT``) is ``BrokerUnavailable``
for the requests concerned. A timed-out message may still be confirmed later: at least once,
never a 202 without a confirm. After any failure of the link the connection is closed (the
state of its channel is unknown) and the next batch opens a new one and declares the topology
again.

The thread starts on the first publish in the process that serves (gunicorn forks its workers
before they load the app, and a publisher inherited through a fork starts afresh in the child).
"""

import atexit
import contextlib
import logging
import os
import select
import threading
import time
import weakref

from amqp import method_framing

from magsync.messaging.broker import (
    BACKFILL_ORDER_TASK,
    BROKER_ERRORS,
    SYNC_ORDER_TASK,
    BrokerUnavailable,
    declare_topology,
)
from magsync.messaging.task_message import sync_order_message

log = logging.getLogger(__name__)

# While no request comes, the thread wakes this often to answer heartbeats and notice a
# connection the broker closed.
IDLE_TICK = 5.0

_WAITING, _SENT, _SETTLED = "waiting", "sent", "settled"


class Delivery:
    """One message handed to the publisher thread, and its outcome once settled.

    ``error`` is None for a confirmed message, else why it was not; ``cause`` the exception
    behind it, if any.
    """

    __slots__ = ("cause", "deadline", "done", "error", "message", "returned", "state", "task_id")

    def __init__(self, message, task_id, deadline):
        self.message = message
        self.task_id = task_id
        self.deadline = deadline
        self.state = _WAITING
        self.returned = None
        self.error = None
        self.cause = None
        # Held until the outcome is known: the waiting request blocks on it, the settling
        # thread releases it (the lightest wake-up there is: one futex, no condition).
        self.done = threading.Lock()
        self.done.acquire()


class InFlight:
    """The messages published on one confirming channel and not yet confirmed, by delivery tag.

    RabbitMQ numbers a channel's messages from 1 once it is in confirm mode, and answers each
    with ``basic.ack`` or ``basic.nack``, either for one tag or (``multiple``) for every tag up
    to it. An unroutable ``mandatory`` message comes back as ``basic.return`` first, then is
    acknowledged: it is settled as a failure. ``settle(delivery, error)`` receives each outcome.
    """

    def __init__(self, settle):
        self._settle = settle
        self._deliveries = {}  # tag -> Delivery, in tag order
        self._tag = 0

    def __len__(self):
        return len(self._deliveries)

    def add(self, delivery):
        """Register ``delivery`` as the channel's next published message; returns its tag."""
        self._tag += 1
        self._deliveries[self._tag] = delivery
        return self._tag

    def ack(self, tag, multiple=False):
        for delivery in self._pop(tag, multiple):
            self._settle(delivery, delivery.returned)

    def nack(self, tag, multiple=False):
        for delivery in self._pop(tag, multiple):
            self._settle(delivery, "nacked by the broker")

    def returned(self, task_id, reason):
        """Mark the oldest unconfirmed message of ``task_id`` as returned (RabbitMQ returns
        messages in the order they were published, each before its confirm)."""
        for delivery in self._deliveries.values():
            if delivery.returned is None and delivery.task_id == task_id:
                delivery.returned = f"returned by the broker: {reason}"
                return

    def _pop(self, tag, multiple):
        if not multiple:
            delivery = self._deliveries.pop(tag, None)
            return [] if delivery is None else [delivery]
        covered = []
        for pending in self._deliveries:
            if pending > tag:
                break
            covered.append(pending)
        return [self._deliveries.pop(pending) for pending in covered]


class Cork:
    """The connection's frame writer, corked while a batch is published: its frames leave in one
    socket write instead of one per message (py-amqp's ``frame_writer`` factory, wrapped)."""

    def __init__(self):
        self.transport = None
        self._frames = None

    def frame_writer(self, connection, transport):
        self.transport = transport
        return method_framing.frame_writer(connection, self)

    def write(self, data):
        if self._frames is None:
            self.transport.write(data)
        else:
            self._frames.append(bytes(data))  # py-amqp reuses the buffer behind ``data``

    @contextlib.contextmanager
    def corked(self):
        self._frames = []
        try:
            yield
        finally:
            frames, self._frames = self._frames, None
        if frames:
            self.transport.write(b"".join(frames))


class Link:
    """A connection with its confirming channel; used by the publisher thread only."""

    def __init__(self, connection, channel, cork, inflight):
        self.connection = connection
        self.amqp = connection.connection
        self.channel = channel
        self.cork = cork
        self.inflight = inflight
        channel.events["basic_ack"].add(inflight.ack)
        channel.events["basic_nack"].add(inflight.nack)
        channel.events["basic_return"].add(self._on_return)

    @classmethod
    def open(cls, publisher, deadline):
        """Connect, declare the publisher's topology and open a channel in confirm mode, all by
        ``deadline``."""
        timeout = max(deadline - time.monotonic(), 0.1)
        cork = Cork()
        celery = publisher.celery
        connection = celery.connection_for_write(
            connect_timeout=timeout,
            heartbeat=celery.conf.broker_heartbeat,
            transport_options=_transport_options(
                publisher.connection_name, publisher.timeout, cork
            ),
        )
        try:
            connection.ensure_connection(max_retries=0, timeout=timeout)
            with connection.connection.transport.having_timeout(timeout):
                publisher.topology.declare(connection)
                channel = connection.connection.channel()
                channel.confirm_select()
        except BaseException:
            connection.collect()
            raise
        return cls(connection, channel, cork, InFlight(publisher._settle))

    def poll(self):
        """Handle what the broker sent while the link was idle (heartbeats, a close): raises
        if the broker closed the connection."""
        readable, _, _ = select.select([self.amqp.transport.sock], [], [], 0)
        if readable:
            with contextlib.suppress(TimeoutError):  # nothing more to read
                self.amqp.drain_events(timeout=0)

    def heartbeat(self):
        self.amqp.heartbeat_tick()

    def publish(self, batch, exchange, routing_key):
        """Publish every delivery of ``batch`` (``mandatory``), in one socket write."""
        publish, add = self.channel.basic_publish, self.inflight.add
        with self.cork.corked():
            for delivery in batch:
                add(delivery)
                publish(delivery.message, exchange, routing_key, mandatory=True)

    def wait_confirms(self, deadline):
        """Read the broker's answers until every published message is settled; ``TimeoutError``
        at ``deadline``."""
        drain = self.amqp.drain_events
        while self.inflight:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(self.inflight)} message(s) not confirmed in time")
            drain(timeout=remaining)

    def close(self):
        """Close politely (the publisher is shutting down), for a second at most."""
        try:
            with self.amqp.transport.having_timeout(1.0):
                self.connection.close()
        except Exception:
            log.debug("closing the publisher's broker connection failed", exc_info=True)
            self.drop()

    def drop(self):
        """Let go of a connection whose state is unknown, without waiting for the broker."""
        try:
            self.connection.collect()
        except Exception:
            log.debug("dropping the publisher's broker connection failed", exc_info=True)

    def _on_return(self, exc, exchange, routing_key, message):
        reason = getattr(exc, "reply_text", None) or str(exc)
        self.inflight.returned(message.properties.get("correlation_id"), reason)


def _transport_options(name, timeout, cork):
    """py-amqp connection options of the publisher's link."""
    return {
        # Confirms are awaited here, for a whole batch, not by py-amqp for each message.
        "confirm_publish": False,
        # Without ``connection.blocked`` py-amqp does not poll the socket before each publish;
        # a blocked broker shows as confirms that do not come in time.
        "client_properties": {
            "connection_name": name,
            "capabilities": {"consumer_cancel_notify": True, "authentication_failure_close": True},
        },
        # Socket-level bounds on every write and blocking read (a broker that stops reading).
        "write_timeout": timeout,
        "read_timeout": timeout,
        "frame_writer": cork.frame_writer,
    }


_publishers = weakref.WeakSet()


def _forget_after_fork():
    for publisher in list(_publishers):
        publisher._reset()


os.register_at_fork(after_in_child=_forget_after_fork)


class GroupCommitPublisher:
    """Publishes sync tasks for many request threads through one confirming channel.

    ``publish(event, task_id)`` and ``publish_all([(event, task_id), ...])`` return only once
    the broker confirmed every message they were given, and raise ``BrokerUnavailable``
    otherwise, each within ``timeout`` seconds. Thread-safe; one per process is the point.
    """

    def __init__(self, celery_app, topology, timeout, *, backfill=False):
        self.celery = celery_app
        self.topology = topology
        self.timeout = timeout
        self._exchange = topology.exchange.name
        # ``backfill``: ``magsync.backfill_order`` tasks on the backfill queue (``magsync
        # backfill``), instead of ``magsync.sync_order`` on the live one.
        self._routing_key = topology.backfill_routing_key if backfill else topology.work_routing_key
        self._task_name = BACKFILL_ORDER_TASK if backfill else SYNC_ORDER_TASK
        self._stats = {"batches": 0, "messages": 0, "largest_batch": 0, "reconnects": 0}
        self._reset()
        _publishers.add(self)

    def _reset(self):
        """Start afresh: no thread, no connection, nothing pending (also in a forked child,
        where the parent's thread does not exist and its socket is not ours to use)."""
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._pending = []
        self._thread = None
        self._stop = None

    @property
    def connection_name(self):
        """The name the broker shows for this process's publishing connection."""
        return f"magsync web publisher {self.topology.namespace} pid {os.getpid()}"

    def stats(self):
        """Counters since start (batches committed, messages published, the largest batch,
        connections replaced after a failure) and the messages waiting for the next batch."""
        with self._lock:
            return {**self._stats, "waiting": len(self._pending)}

    def declare_now(self):
        """Declare the topology at start-up (best effort, as ``Publisher.declare_now``)."""
        return declare_topology(self.celery, self.topology, self.timeout)

    def publish(self, event, task_id):
        """Enqueue ``magsync.sync_order(event)``; raise ``BrokerUnavailable`` if not confirmed."""
        self.publish_all([(event, task_id)])
        return task_id

    def publish_all(self, events):
        """Enqueue each ``(event, task_id)`` together; returns the task ids once all are
        confirmed, raises ``BrokerUnavailable`` if any is not (the others may be queued)."""
        reply_to = self.celery.thread_oid
        deadline = time.monotonic() + self.timeout
        deliveries = [
            Delivery(
                sync_order_message(event, task_id, reply_to, self._task_name), task_id, deadline
            )
            for event, task_id in events
        ]
        self._hand_over(deliveries)
        failed = [d for d in deliveries if self._outcome(d) is not None]
        if failed:
            first = failed[0]
            raise BrokerUnavailable(
                f"{len(failed)} of {len(deliveries)} not confirmed: {first.error}"
            ) from first.cause
        return [d.task_id for d in deliveries]

    def _hand_over(self, deliveries):
        with self._lock:
            if self._thread is None:
                self._start()
            self._pending.extend(deliveries)
            self._wakeup.notify()

    def _outcome(self, delivery):
        """Wait for ``delivery`` until its deadline; its error, or None when confirmed. Past
        the deadline it is settled as timed out (and skipped if not published yet)."""
        if delivery.done.acquire(timeout=max(delivery.deadline - time.monotonic(), 0)):
            return delivery.error  # released only once settled
        with self._lock:
            if delivery.state != _SETTLED:
                delivery.state = _SETTLED
                delivery.error = f"TimeoutError: not confirmed within {self.timeout:g}s"
        return delivery.error

    def _settle(self, delivery, error, cause=None):
        with self._lock:
            if delivery.state == _SETTLED:
                return
            delivery.state = _SETTLED
            delivery.error, delivery.cause = error, cause
        delivery.done.release()

    def _start(self):
        self._stop = threading.Event()
        committer = _Committer(self, self._stop)
        self._thread = threading.Thread(target=committer.run, name="magsync-publisher", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _next_batch(self, stop):
        """The messages waiting to be published (claimed), after waiting up to ``IDLE_TICK``;
        None once ``stop`` is set."""
        with self._lock:
            if not self._pending and not stop.is_set():
                self._wakeup.wait(IDLE_TICK)
            if stop.is_set():
                return None
            pending, self._pending = self._pending, []
            batch = [d for d in pending if d.state == _WAITING]
            for delivery in batch:
                delivery.state = _SENT
        return batch

    def _count(self, batch):
        stats = self._stats
        stats["batches"] += 1
        stats["messages"] += len(batch)
        stats["largest_batch"] = max(stats["largest_batch"], len(batch))

    # -- shutting down --------------------------------------------------------------------------

    def close(self):
        """Stop the thread (after its current batch), close the connection and fail whatever
        was still waiting. A later publish starts again."""
        with self._lock:
            thread, stop = self._thread, self._stop
            if stop is not None:
                stop.set()
                self._wakeup.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.timeout + IDLE_TICK)
        with self._lock:
            leftovers, self._pending = self._pending, []
            if self._thread is thread:
                self._thread = self._stop = None
        for delivery in leftovers:
            self._settle(delivery, "BrokerUnavailable: the publisher was closed")
        atexit.unregister(self.close)


class _Committer:
    """The publisher thread: takes the pending messages, publishes them on its link and waits
    for their confirms, batch after batch, until stopped. The link is this thread's alone."""

    def __init__(self, publisher, stop):
        self.publisher = publisher
        self.stop = stop
        self.link = None

    def run(self):
        publisher = self.publisher
        while (batch := publisher._next_batch(self.stop)) is not None:
            try:
                if batch:
                    self.commit(batch)
                elif self.link is not None:
                    self.keep_alive()
            except Exception as exc:  # the thread must outlive a bug: requests would hang on it
                log.exception("publisher thread error")
                self.broken(exc, batch)
        if self.link is not None:
            self.link.close()
            self.link = None

    def commit(self, batch):
        deadline = max(d.deadline for d in batch)
        try:
            link = self.usable_link(deadline)
            link.publish(batch, self.publisher._exchange, self.publisher._routing_key)
            self.publisher._count(batch)
            link.wait_confirms(deadline)
        except BROKER_ERRORS as exc:
            self.broken(exc, batch)

    def usable_link(self, deadline):
        """The open link, or a new one if there is none or the broker closed it while idle
        (nothing was in flight on it: reconnecting loses nothing)."""
        if self.link is not None:
            try:
                self.link.poll()
            except BROKER_ERRORS as exc:
                log.info(
                    "publisher connection lost while idle; reconnecting",
                    extra={"cause": f"{type(exc).__name__}: {exc}"},
                )
                self.drop_link()
        if self.link is None:
            publisher = self.publisher
            self.link = Link.open(publisher, deadline)
        return self.link

    def keep_alive(self):
        try:
            self.link.heartbeat()
            self.link.poll()
        except BROKER_ERRORS as exc:
            log.info(
                "publisher connection lost while idle",
                extra={"cause": f"{type(exc).__name__}: {exc}"},
            )
            self.drop_link()

    def broken(self, exc, batch):
        """Fail every unsettled message of ``batch`` with ``exc`` and replace the link."""
        error = f"{type(exc).__name__}: {exc}"
        for delivery in batch:
            self.publisher._settle(delivery, error, exc)
        if self.link is not None:
            log.warning(
                "publisher connection replaced after a failure",
                extra={"cause": error, "messages": len(batch)},
            )
            self.publisher._stats["reconnects"] += 1
            self.drop_link()

    def drop_link(self):
        """Let go of the link (its state unknown: no goodbye that could wait on the broker)."""
        link, self.link = self.link, None
        if link is not None:
            link.drop()
