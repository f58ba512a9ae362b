"""The ``magsync.sync_order`` task message, built once per order event without Celery's sender.

Celery's ``send_task`` routes, signals, acquires a producer and serialises through kombu on every
call; the web process needs none of that to say "sync this order". ``sync_order_message`` builds
the same message in one step: Celery's task protocol 2, as ``app.amqp.as_task_v2`` makes it for
``send_task("magsync.sync_order", args=[event], task_id=..., argsrepr=..., kwargsrepr="{}")``
and kombu's JSON serialiser encodes it, so a worker consumes it exactly as one Celery sent
(``tests/test_group_commit.py`` compares the two on the wire).

- headers: ``lang``, ``task``, ``id``, ``root_id`` (the task id), ``retries`` 0, ``argsrepr``
  without the buyer's details (``task_argsrepr``), ``origin`` (``gen<pid>@<host>``), the rest
  empty as for a task sent from outside a worker;
- properties: ``correlation_id`` (the task id), ``reply_to``, ``content_type``
  ``application/json``, ``content_encoding`` ``utf-8``, ``delivery_mode`` 2 (persistent),
  ``priority`` 0;
- body: ``[args, kwargs, embed]`` as JSON.

Sentry's Celery integration adds its trace headers (``sentry-trace``, ``baggage``, ...) to what
``send_task`` sends while Sentry is on; these messages carry none, so in Sentry a task's events
are not linked to the web request that published it (magsync's alerts come from the workers).

Most of the properties are the same for every message of a process, so their AMQP encoding is
computed once (by py-amqp itself) and each message only encodes its task id, ``argsrepr`` and
``reply_to`` into it: py-amqp would otherwise encode the 19 headers of every message anew.
"""

import os
from struct import pack

import amqp
from amqp.serialization import dumps as amqp_dumps
from celery.utils.nodenames import anon_nodename
from kombu.utils.json import dumps

from magsync.messaging.broker import SYNC_ORDER_TASK, task_argsrepr

CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
PERSISTENT = 2
# The embedded options of a task sent alone: no callbacks, no chain, no chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
# The headers in Celery's order; the three that vary by message are encoded per message.
_HEADER_NAMES = (
    "lang",
    "task",
    "id",
    "shadow",
    "eta",
    "expires",
    "group",
    "group_index",
    "retries",
    "timelimit",
    "root_id",
    "parent_id",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "ignore_result",
    "replaced_task_nesting",
    "stamped_headers",
    "stamps",
)
_PER_MESSAGE = frozenset({"id", "root_id", "argsrepr"})


class TaskMessage(amqp.Message):
    """An ``amqp.Message`` whose properties were encoded when it was built."""

    def __init__(self, body, encoded_properties, **properties):
        super().__init__(body, **properties)
        self.encoded_properties = encoded_properties

    def _serialize_properties(self):
        return self.encoded_properties


class _Encoding:
    """The constant parts of one process's encoded properties, around the variable ones."""

    def __init__(self, origin, task_name=SYNC_ORDER_TASK):
        self.constant = {
            "lang": "py",
            "task": task_name,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "parent_id": None,
            "kwargsrepr": "{}",
            "origin": origin,
            "ignore_result": None,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        }
        # Property flags (content_type to reply_to present), then the two short strings.
        self.head = pack(">H", 0xFE00) + amqp_dumps("ss", [CONTENT_TYPE, CONTENT_ENCODING])
        self.segments = self._segments()

    def _segments(self):
        """The encoded header items around the per-message ones: four runs of constants."""
        segments, run = [], {}
        for name in _HEADER_NAMES:
            if name in _PER_MESSAGE:
                segments.append(_table_items(run))
                run = {}
            else:
                run[name] = self.constant[name]
        segments.append(_table_items(run))
        return segments

    def headers(self, task_id, argsrepr):
        values = {**self.constant, "id": task_id, "root_id": task_id, "argsrepr": argsrepr}
        return {name: values[name] for name in _HEADER_NAMES}

    def encode(self, task_id, argsrepr, reply_to):
        """The encoded properties of one message (py-amqp's ``_serialize_properties``)."""
        first, second, third, rest = self.segments
        items = b"".join(
            (
                first,
                _longstr_item(b"id", task_id),
                second,
                _longstr_item(b"root_id", task_id),
                third,
                _longstr_item(b"argsrepr", argsrepr),
                rest,
            )
        )
        return b"".join(
            (
                self.head,
                pack(">I", len(items)),
                items,
                pack("BB", PERSISTENT, 0),
                _shortstr(task_id),
                _shortstr(reply_to),
            )
        )


def _table_items(items):
    return amqp_dumps("F", [items])[4:]  # without the table's length


def _longstr_item(name, text):
    value = text.encode("utf-8", "surrogatepass")
    return b"".join((pack("B", len(name)), name, pack(">cI", b"S", len(value)), value))


def _shortstr(text):
    value = text.encode("utf-8", "surrogatepass")
    if len(value) > 255:
        raise ValueError(f"AMQP short string over 255 bytes: {text[:40]!r}...")
    return pack("B", len(value)) + value


_encodings = (None, {})


def _process_encoding(task_name=SYNC_ORDER_TASK):
    """The encoding of this process (its ``origin``: ``gen<pid>@<host>``) for ``task_name``,
    built once per process, so a forked child gets its own."""
    global _encodings
    pid, encodings = _encodings
    current = os.getpid()
    if pid != current:
        encodings = {}
        _encodings = (current, encodings)
    encoding = encodings.get(task_name)
    if encoding is None:
        encoding = encodings[task_name] = _Encoding(anon_nodename(), task_name)
    return encoding


def sync_order_message(event, task_id, reply_to="", task_name=SYNC_ORDER_TASK):
    """The ``amqp.Message`` of ``magsync.sync_order(event)`` with id ``task_id``.

    ``reply_to`` is what Celery would put there (the sending app's ``thread_oid``); magsync
    keeps no results, so workers never answer to it. ``task_name`` names another task of the
    same signature (``magsync.backfill_order``).
    """
    encoding = _process_encoding(task_name)
    argsrepr = task_argsrepr(event)
    return TaskMessage(
        dumps(([event], {}, _EMBED)).encode(CONTENT_ENCODING),
        encoding.encode(task_id, argsrepr, reply_to),
        content_type=CONTENT_TYPE,
        content_encoding=CONTENT_ENCODING,
        application_headers=encoding.headers(task_id, argsrepr),
        delivery_mode=PERSISTENT,
        priority=0,
        correlation_id=task_id,
        reply_to=reply_to,
    )
