"""The ``magsync.sync_order`` message the web process builds is the one Celery would send: same
headers, properties and body on the wire, its properties encoded as py-amqp encodes them."""

import copy

import amqp
import pytest
from kombu import Connection

from magsync.messaging.app import create_celery
from magsync.messaging.broker import task_argsrepr
from magsync.messaging.task_message import sync_order_message
from magsync.settings import Settings
from tests.helpers import load_fixture

# What Sentry's Celery integration adds to ``send_task`` while a Sentry client is on in the
# process (as after another test started one): trace propagation, not part of the task.
SENTRY_HEADERS = {
    "sentry-trace",
    "baggage",
    "sentry-task-enqueued-time",
    "sentry-monitor-start-timestamp-s",
    "headers",
}


def without_sentry(properties):
    headers = properties["application_headers"]
    return {
        **properties,
        "application_headers": {k: v for k, v in headers.items() if k not in SENTRY_HEADERS},
    }


@pytest.mark.parametrize(
    ("task", "queue"), [("magsync.sync_order", "orders"), ("magsync.backfill_order", "backfill")]
)
def test_the_message_is_the_one_celery_sends(rabbitmq_url, broker_namespace, task, queue):
    celery = create_celery(
        Settings.from_env(
            {"CELERY_BROKER_URL": rabbitmq_url, "MAGSYNC_BROKER_NAMESPACE": broker_namespace}
        )
    )
    topology = celery.magsync_topology
    order = copy.deepcopy(load_fixture("seed_webhook.json")["order"])
    order["customer_firstname"] = "Zoë"  # not ASCII
    event = {"event": "sales_order_save_after", "entity_id": 123, "increment_id": "000000123"}
    event["order"] = order
    task_id = "000000123:0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    with Connection(rabbitmq_url) as conn:
        topology.declare(conn)
    # The backfill task is routed to its queue by the app's configuration, not by the caller.
    where = {} if queue == "backfill" else {"queue": topology.work_queue}
    routing_key = f"{broker_namespace}.{queue}"
    celery.send_task(
        task,
        args=[event],
        task_id=task_id,
        argsrepr=task_argsrepr(event),
        kwargsrepr="{}",
        routing_key=routing_key,
        **where,
    )
    with amqp.Connection("127.0.0.1:5672") as conn:
        channel = conn.channel()
        built = sync_order_message(event, task_id, reply_to=celery.thread_oid, task_name=task)
        channel.basic_publish(built, topology.exchange.name, routing_key)
        sent_by_celery = channel.basic_get(f"{broker_namespace}.{queue}", no_ack=True)
        sent_by_magsync = channel.basic_get(f"{broker_namespace}.{queue}", no_ack=True)
    assert sent_by_magsync.properties == without_sentry(sent_by_celery.properties)
    assert sent_by_magsync.body == sent_by_celery.body
    headers = sent_by_magsync.headers
    assert headers["task"] == task
    assert headers["id"] == headers["root_id"] == task_id
    assert headers["argsrepr"] == "order 000000123 (entity 123)"
    assert "jane.doe@example.com" not in repr(headers)
    assert sent_by_magsync.properties["delivery_mode"] == 2  # persistent


@pytest.mark.parametrize(
    ("increment_id", "task_id", "reply_to"),
    [
        ("000000123", "000000123:0f1e2d3c4b5a69788796a5b4c3d2e1f0", "a1b2c3d4-0000-3000-8000-0"),
        ("Zoë-№7", "Zoë-№7:sha256:" + "ab" * 32, ""),
        ("x" * 50, "x" * 50 + ":" + "y" * 100, "r" * 40),
    ],
)
def test_the_properties_are_encoded_as_py_amqp_encodes_them(increment_id, task_id, reply_to):
    message = sync_order_message({"increment_id": increment_id, "entity_id": 7}, task_id, reply_to)
    plain = amqp.Message(message.body, **message.properties)
    assert message._serialize_properties() == plain._serialize_properties()
    argsrepr = message.properties["application_headers"]["argsrepr"]
    assert argsrepr == f"order {increment_id} (entity 7)"


def test_a_task_id_over_amqp_s_limit_is_refused_when_the_message_is_built():
    with pytest.raises(ValueError, match="255 bytes"):
        sync_order_message({"increment_id": "1", "entity_id": 1}, "é" * 200)
