"""The webhook receiver: what it answers, and what it enqueues.

Requests it must refuse go to a receiver with a fake publisher and a broker address nothing
listens on, so those tests need no RabbitMQ and prove by the publisher's record that nothing was
enqueued; accepted webhooks go through the real RabbitMQ.
"""

import json

import pytest
from kombu import Connection

from magsync.magento.signature import sign
from magsync.settings import ConfigError
from magsync.web.app import create_app
from tests.helpers import FakePublisher, load_fixture, queue_depth

SECRET = "whsec-test-0123456789"
SEED = json.dumps(load_fixture("seed_webhook.json")).encode()
RECEIVER_ENV = {
    "MAGENTO_WEBHOOK_SECRET": f"retired-secret-0123,{SECRET}",
    "MAGSYNC_MAX_BODY_BYTES": 64 * 1024,
}


@pytest.fixture
def publisher():
    return FakePublisher()


@pytest.fixture
def client(make_settings, unused_port, publisher):
    """A receiver that publishes to ``publisher``; its broker address has no listener, so a
    request that reached for RabbitMQ would fail rather than pass by luck."""
    settings = make_settings(
        **RECEIVER_ENV, CELERY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{unused_port}//"
    )
    return create_app(settings, publisher=publisher).test_client()


@pytest.fixture
def broker_app(make_settings, rabbitmq_url, broker_namespace):
    """A receiver publishing to a namespace of its own on the real RabbitMQ."""
    settings = make_settings(
        **RECEIVER_ENV,
        CELERY_BROKER_URL=rabbitmq_url,
        MAGSYNC_BROKER_NAMESPACE=broker_namespace,
        MAGSYNC_PUBLISH_TIMEOUT=3,
    )
    app = create_app(settings)
    yield app
    app.extensions["magsync.receiver"].publisher.close()


@pytest.fixture
def broker_client(broker_app):
    return broker_app.test_client()


def post(client, body, signature=None, content_type="application/json"):
    headers = {"Content-Type": content_type}
    if signature is not None:
        headers["X-Magento-Signature"] = signature
    return client.post("/magento/webhook", data=body, headers=headers)


def envelope(**order_changes):
    document = load_fixture("seed_webhook.json")
    document["order"].update(order_changes)
    return json.dumps(document).encode()


def test_valid_webhook_is_confirmed_and_enqueued(broker_client, rabbitmq_url, broker_namespace):
    response = post(broker_client, SEED, sign(SEED, SECRET))
    assert response.status_code == 202
    assert response.json["status"] == "accepted"
    assert response.json["order"] == "000000123"

    with Connection(rabbitmq_url) as conn:
        raw = conn.default_channel.basic_get(f"{broker_namespace}.orders", no_ack=True)
        assert raw is not None
        message = conn.default_channel.message_to_python(raw)
    assert message.headers["task"] == "magsync.sync_order"
    assert message.headers["id"] == response.json["task_id"]
    assert message.content_type == "application/json"
    assert message.properties["delivery_mode"] == 2  # persistent
    assert message.delivery_info["routing_key"] == f"{broker_namespace}.orders"
    args, _kwargs, _embed = message.decode()
    [event] = args
    assert event["increment_id"] == "000000123"
    assert event["entity_id"] == 123
    assert event["order"]["customer_email"] == "jane.doe@example.com"


def test_a_rotated_secret_is_still_accepted(broker_client, rabbitmq_url, broker_namespace):
    assert post(broker_client, SEED, sign(SEED, "retired-secret-0123")).status_code == 202
    assert queue_depth(rabbitmq_url, f"{broker_namespace}.orders") == 1


def test_an_accepted_webhook_hands_the_event_and_its_task_id_to_the_publisher(client, publisher):
    response = post(client, SEED, sign(SEED, SECRET))
    assert response.status_code == 202
    [(event, task_id)] = publisher.published
    assert task_id == response.json["task_id"]
    assert task_id.startswith("000000123:")
    assert event["increment_id"] == "000000123"
    assert event["entity_id"] == 123
    assert event["order"]["customer_email"] == "jane.doe@example.com"


CASES = [
    pytest.param(SEED, None, "application/json", 401, "invalid_signature", id="no-signature"),
    pytest.param(
        SEED,
        "sha256=" + "0" * 64,
        "application/json",
        401,
        "invalid_signature",
        id="wrong-signature",
    ),
    pytest.param(
        SEED,
        sign(SEED, "another-secret"),
        "application/json",
        401,
        "invalid_signature",
        id="other-secret",
    ),
    pytest.param(
        SEED, "sha1=abc", "application/json", 400, "invalid_signature", id="other-algorithm"
    ),
    pytest.param(
        SEED, "garbage", "application/json", 400, "invalid_signature", id="malformed-header"
    ),
    pytest.param(
        SEED, sign(SEED, SECRET), "text/plain", 415, "unsupported_media_type", id="text-plain"
    ),
    pytest.param(
        SEED,
        sign(SEED, SECRET),
        "application/x-www-form-urlencoded",
        415,
        "unsupported_media_type",
        id="form",
    ),
    pytest.param(
        b"{not json",
        sign(b"{not json", SECRET),
        "application/json",
        400,
        "invalid_json",
        id="bad-json",
    ),
    pytest.param(
        b"\xff\xfe",
        sign(b"\xff\xfe", SECRET),
        "application/json",
        400,
        "invalid_json",
        id="not-utf8",
    ),
]


@pytest.mark.parametrize(("body", "signature", "content_type", "status", "error"), CASES)
def test_rejected_requests_enqueue_nothing(
    client, publisher, body, signature, content_type, status, error
):
    response = post(client, body, signature, content_type)
    assert response.status_code == status
    assert response.json["error"] == error
    assert publisher.published == []


ENVELOPE_CASES = [
    pytest.param(b'{"event": "customer_save_after", "order": {}}', "event", id="unknown-event"),
    pytest.param(b'{"order": {"entity_id": 1, "increment_id": "1"}}', "event", id="no-event"),
    pytest.param(b'{"event": "sales_order_save_after"}', "order", id="no-order"),
    pytest.param(envelope(increment_id=None), "order", id="null-order-number"),
    pytest.param(envelope(entity_id="abc"), "order", id="bad-entity-id"),
    pytest.param(b"[1, 2]", "_schema", id="array"),
    pytest.param(
        b'{"type": "com.adobe.commerce.observer.sales_order_save_after", "id": "e1",'
        b' "data": {"value": {"entity_id": "5"}}}',
        "data",
        id="adobe-without-order-number",
    ),
]


@pytest.mark.parametrize(("body", "field"), ENVELOPE_CASES)
def test_bad_envelopes_get_422_with_field_errors(client, publisher, body, field):
    response = post(client, body, sign(body, SECRET))
    assert response.status_code == 422
    assert response.json["error"] == "invalid_envelope"
    assert field in response.json["errors"]
    assert publisher.published == []


def test_adobe_envelope_is_accepted(broker_client, rabbitmq_url, broker_namespace):
    body = json.dumps(load_fixture("adobe_io_event.json")).encode()
    response = post(broker_client, body, sign(body, SECRET))
    assert response.status_code == 202
    assert response.json["task_id"] == "100004711:4f2a9c1e-8d3b-4e57-a1c6-2b9f0e7d5a31"
    assert queue_depth(rabbitmq_url, f"{broker_namespace}.orders") == 1


def test_oversized_body_gets_413(client, publisher):
    body = envelope(padding="x" * (70 * 1024))
    response = post(client, body, sign(body, SECRET))
    assert response.status_code == 413
    assert publisher.published == []


def test_unreachable_broker_gives_503_with_retry_after(make_settings, unused_port):
    settings = make_settings(
        MAGENTO_WEBHOOK_SECRET=SECRET,
        CELERY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{unused_port}//",
        MAGSYNC_PUBLISH_TIMEOUT=2,
    )
    app = create_app(settings)
    client = app.test_client()
    try:
        response = post(client, SEED, sign(SEED, SECRET))
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) > 0
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
    finally:
        app.extensions["magsync.receiver"].publisher.close()


def test_web_process_refuses_to_start_without_a_secret(make_settings):
    with pytest.raises(ConfigError, match="MAGENTO_WEBHOOK_SECRET"):
        create_app(make_settings())


def test_readyz_with_the_broker_up(broker_client):
    assert broker_client.get("/readyz").json == {"status": "ready"}


def test_only_post_is_routed(client):
    response = client.get("/magento/webhook")
    assert response.status_code == 405
    assert response.json["error"] == "method_not_allowed"


def test_web_declares_the_dead_letter_side_at_start_up(broker_app, rabbitmq_url, broker_namespace):
    # No webhook has been published yet: the queues exist because the app started.
    with Connection(rabbitmq_url) as conn:
        channel = conn.default_channel
        for queue in (f"{broker_namespace}.dead", f"{broker_namespace}.orders"):
            assert channel.queue_declare(queue, passive=True).queue == queue
