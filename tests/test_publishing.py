"""Every publish (an order, a replay, a dead letter) is confirmed through one function, and every
way the broker can refuse a message ends as ``BrokerUnavailable``."""

import types

import amqp
import pytest
from amqp.exceptions import MessageNacked, NotFound, PreconditionFailed
from kombu.exceptions import OperationalError

from magsync.errors import DeadLetter
from magsync.messaging.app import create_celery
from magsync.messaging.broker import BrokerUnavailable, Publisher, publish_confirmed
from magsync.messaging.dead_letters import DeadLetters
from magsync.settings import Settings


def failing(exc):
    def send(**options):
        raise exc

    return send


@pytest.mark.parametrize(
    "exc",
    [
        OperationalError("connection refused"),
        ConnectionRefusedError(111, "refused"),
        TimeoutError("timed out"),  # the confirm that never came
        MessageNacked(),
        NotFound("no exchange 'magsync'"),
        PreconditionFailed("inequivalent arg 'x-queue-type'"),
    ],
)
def test_every_broker_failure_is_broker_unavailable(exc):
    with pytest.raises(BrokerUnavailable, match=type(exc).__name__) as raised:
        publish_confirmed(failing(exc), 5, {"max_retries": 0})
    assert raised.value.__cause__ is exc


def test_a_failure_that_is_not_the_broker_s_is_not_hidden():
    with pytest.raises(TypeError):
        publish_confirmed(failing(TypeError("a bug")), 5, {"max_retries": 0})


def test_the_publish_is_retried_and_bounded_as_asked():
    seen = {}

    def send(**options):
        seen.update(options)
        return "sent"

    assert publish_confirmed(send, 2.5, {"max_retries": 1}) == "sent"
    assert seen == {
        "retry": True,
        "retry_policy": {"max_retries": 1},
        "timeout": 2.5,
        "confirm_timeout": 2.5,
    }


def test_a_broker_refusing_the_topology_is_unavailable_to_both_publishers(
    rabbitmq_url, broker_namespace
):
    """Classic queues where magsync declares quorum ones make RabbitMQ close the channel with
    PRECONDITION_FAILED, an amqp error that is neither kombu's nor a socket's."""
    with amqp.Connection("127.0.0.1:5672") as conn:
        channel = conn.channel()
        channel.queue_declare(f"{broker_namespace}.orders", durable=True, auto_delete=False)
        channel.queue_declare(f"{broker_namespace}.dead", durable=True, auto_delete=False)
    settings = Settings.from_env(
        {"CELERY_BROKER_URL": rabbitmq_url, "MAGSYNC_BROKER_NAMESPACE": broker_namespace}
    )
    celery = create_celery(settings)
    publisher = Publisher(celery, celery.magsync_topology, 5)
    try:
        with pytest.raises(BrokerUnavailable, match="PreconditionFailed"):
            publisher.publish({"increment_id": "000000123", "entity_id": 1}, "000000123:t1")
    finally:
        publisher.close()
    request = types.SimpleNamespace(
        id="000000123:t1",
        task="magsync.sync_order",
        args=[{"increment_id": "000000123", "entity_id": 1}],
        kwargs={},
        retries=0,
        delivery_info={},
    )
    with pytest.raises(BrokerUnavailable, match="PreconditionFailed"):
        DeadLetters(celery, celery.magsync_topology, 2).put(
            request, DeadLetter("refused", reason="REQUIRED_FIELD_MISSING"), 1, 0.0, 0.0
        )
