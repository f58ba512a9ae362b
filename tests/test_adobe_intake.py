"""``/adobe/events``: the registration check, RSA signatures against a local key host, the
recipient, batches, and which intake is on. Paths that publish use the real RabbitMQ; paths that
refuse record with a publisher that proves nothing was published."""

import base64
import io
import json
import logging

import pytest
from kombu import Connection

from magsync.magento import adobe
from magsync.sandbox.magento.webhooks import AdobeKeys
from magsync.sandbox.salesforce import certs
from magsync.settings import ConfigError
from magsync.web.app import create_app
from tests.adobe_io import (
    CLIENT_ID,
    KeyHost,
    RecordingPublisher,
    ValidationHost,
    delivery,
    event_document,
)
from tests.helpers import load_fixture, queue_depth, wait_for

URL = "/adobe/events"


@pytest.fixture
def key_host():
    host = KeyHost()
    yield host
    host.close()


@pytest.fixture
def make_app(make_settings, key_host):
    """An app with only the Adobe intake on (no MAGENTO_WEBHOOK_SECRET), keys from ``key_host``;
    ``publisher`` a ``RecordingPublisher`` unless ``None`` (then RabbitMQ)."""
    apps = []

    def make(publisher="record", **env):
        values = {
            "ADOBE_IO_CLIENT_ID": CLIENT_ID,
            "ADOBE_IO_PUBLIC_KEY_BASE_URL": key_host.url,
            "ADOBE_IO_TIMEOUT": 2,
            **env,
        }
        chosen = RecordingPublisher() if publisher == "record" else publisher
        app = create_app(make_settings(**values), publisher=chosen)
        apps.append(app)
        return app

    yield make
    for app in apps:
        receiver = app.extensions.get("magsync.receiver")
        if receiver is not None:
            receiver.publisher.close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def keys(key_host):
    """The keys Adobe signs with, as the key host publishes them."""
    return key_host.keys


class Records(logging.Handler):
    """Log records of one logger (the app's log set-up replaces the root's handlers)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def messages(self):
        return [record.getMessage() for record in list(self.records)]


@pytest.fixture
def log_of():
    attached = []

    def attach(name):
        handler = Records()
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        attached.append((logger, handler))
        return handler

    yield attach
    for logger, handler in attached:
        logger.removeHandler(handler)


def published(app):
    return app.extensions["magsync.receiver"].publisher.published


def post(client, body, headers):
    return client.post(URL, data=body, headers=headers)


# -- the registration check ------------------------------------------------------------------


def test_challenge_is_echoed_as_text(client):
    response = client.get(URL, query_string={"challenge": "f3b2a1c0-token"})
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == "f3b2a1c0-token"


def test_challenge_is_echoed_as_json_when_json_is_preferred(client):
    response = client.get(
        URL, query_string={"challenge": "f3b2a1c0-token"}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json == {"challenge": "f3b2a1c0-token"}


@pytest.mark.parametrize("query", [{}, {"challenge": ""}, {"challenge": "x" * 600}])
def test_a_get_without_a_usable_challenge_is_400(client, query):
    assert client.get(URL, query_string=query).status_code == 400


@pytest.fixture
def validation_host(org_state_dir):
    host = ValidationHost(certs.ensure(org_state_dir, "127.0.0.1"))
    yield host
    host.close()


def test_a_validation_url_is_fetched_by_magsync_itself(make_app, validation_host, log_of):
    records = log_of("magsync.magento.adobe")
    app = make_app(
        ADOBE_IO_VALIDATION_HOSTS=validation_host.host, ADOBE_IO_CA_BUNDLE=validation_host.ca_bundle
    )
    url = f"https://{validation_host.host}/csm/registrations/validate?id=r-1&challenge=c-1"
    response = app.test_client().post(
        URL, json={"validationUrl": url}, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json == {"status": "validating"}
    wait_for(
        lambda: validation_host.paths() == ["/csm/registrations/validate?id=r-1&challenge=c-1"],
        what="magsync's GET of the validationUrl",
    )
    wait_for(
        lambda: "adobe registration validated" in records.messages(),
        what="the outcome in the log",
    )
    assert published(app) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://{host}/csm/registrations/validate?id=1",  # not HTTPS
        "https://evil.example/csm/registrations/validate?id=1",  # not a validation host
        "https://user:pw@{host}/csm/registrations/validate?id=1",  # credentials
        "https://{host}.evil.example/validate",
    ],
)
def test_a_validation_url_off_the_validation_hosts_is_never_fetched(make_app, validation_host, url):
    app = make_app(
        ADOBE_IO_VALIDATION_HOSTS=validation_host.host, ADOBE_IO_CA_BUNDLE=validation_host.ca_bundle
    )
    response = app.test_client().post(URL, json={"validationUrl": url.format(host="127.0.0.1")})
    # Refused before any thread starts: nothing can reach the host later.
    assert response.json == {"status": "not_validated"}
    assert validation_host.paths() == []


def test_validation_hosts_default_to_csm_adobe_io(make_settings):
    hosts = make_settings().adobe_validation_hosts
    assert hosts == ("csm.adobe.io",)
    assert adobe.validation_target("https://csm.adobe.io/csm/registrations/validate?id=1", hosts)
    with pytest.raises(ValueError, match="validation host"):
        adobe.validation_target("https://127.0.0.1/csm/registrations/validate", hosts)


# -- signatures --------------------------------------------------------------------------------


def test_a_delivery_signed_by_adobe_is_accepted(client, app, keys):
    body, headers = delivery(event_document(), keys)
    response = post(client, body, headers)
    assert response.status_code == 202, response.json
    [(event, task_id)] = published(app)
    assert task_id == "100004711:3d7e1f0a-6b2c-4d8e-9f10-a1b2c3d4e5f6"
    assert response.json["task_ids"] == [task_id]
    # Deduplicated by the event id, never by the CloudEvent's own id.
    assert event["adobe_event_id"] == "3d7e1f0a-6b2c-4d8e-9f10-a1b2c3d4e5f6"
    assert event["increment_id"] == "100004711" and event["entity_id"] == 4711


def garbage_signature():
    return base64.b64encode(b"\x01" * 256).decode()


@pytest.mark.parametrize("valid", [1, 2])
def test_either_signature_alone_is_enough(client, app, valid, keys):
    body, headers = delivery(event_document(), keys)
    other = 2 if valid == 1 else 1
    headers[f"x-adobe-digital-signature-{other}"] = garbage_signature()
    assert post(client, body, headers).status_code == 202
    assert len(published(app)) == 1


@pytest.mark.parametrize("valid", [1, 2])
def test_either_signature_alone_is_enough_when_the_other_is_absent(client, app, valid, keys):
    body, headers = delivery(event_document(), keys)
    other = 2 if valid == 1 else 1
    del headers[f"x-adobe-digital-signature-{other}"]
    del headers[f"x-adobe-public-key{other}-path"]
    assert post(client, body, headers).status_code == 202


def test_both_signatures_invalid_is_401(client, app, keys):
    body, headers = delivery(event_document(), keys)
    headers["x-adobe-digital-signature-1"] = garbage_signature()
    headers["x-adobe-digital-signature-2"] = "not base64 at all!"
    response = post(client, body, headers)
    assert response.status_code == 401
    assert response.json["error"] == "invalid_signature"
    assert published(app) == []


def test_signatures_of_other_keys_are_401(client, app):
    body, headers = delivery(event_document(), AdobeKeys())  # paths the key host does not know
    assert post(client, body, headers).status_code == 401
    assert published(app) == []


def test_a_tampered_body_is_401(client, app, keys):
    body, headers = delivery(event_document(), keys)
    tampered = body.replace(b'"processing"', b'"complete"', 1)
    assert tampered != body
    assert post(client, tampered, headers).status_code == 401
    assert published(app) == []


def test_an_unsigned_delivery_is_401(client, app):
    body = json.dumps(event_document()).encode()
    response = post(client, body, {"Content-Type": "application/json"})
    assert response.status_code == 401
    assert published(app) == []


ESCAPING_PATHS = [
    "/prod/keys/../../etc/passwd.pem",
    "/prod/keys/..%2f..%2fsecret.pem",
    "/prod/keys/%2e%2e/key.pem",
    "//evil.example/prod/keys/pub-key-1.pem",
    "https://evil.example/prod/keys/pub-key-1.pem",
    "/prod/keys/sub\\..\\key.pem",
    "/prod/keys//pub-key-1.pem",
    "/prod/keys/pub-key-1.pem?x=1",
    "/prod/keys/pub-key-1.pem#frag",
    "/other/pub-key-1.pem",
    "prod/keys/pub-key-1.pem",
    "@evil.example/prod/keys/pub-key-1.pem",
]


@pytest.mark.parametrize("path", ESCAPING_PATHS)
def test_key_paths_that_leave_adobes_shape_are_refused_without_a_fetch(
    client, app, key_host, path, keys
):
    body, headers = delivery(event_document(), keys)
    headers["x-adobe-public-key1-path"] = headers["x-adobe-public-key2-path"] = path
    assert post(client, body, headers).status_code == 401
    assert key_host.requests == []
    assert published(app) == []
    with pytest.raises(adobe.UnsafeKeyPath):
        adobe.key_url(key_host.url, path)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_key_host_that_fails_gives_503_so_adobe_retries(client, app, key_host, status, keys):
    key_host.status = status
    body, headers = delivery(event_document(), keys)
    response = post(client, body, headers)
    assert response.status_code == 503
    assert response.json["error"] == "public_key_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert published(app) == []
    # Nothing failed is cached: once the host is back the same delivery verifies.
    key_host.status = None
    assert post(client, body, headers).status_code == 202


def test_an_unreachable_key_host_gives_503(make_app, unused_port):
    app = make_app(ADOBE_IO_PUBLIC_KEY_BASE_URL=f"http://127.0.0.1:{unused_port}")
    body, headers = delivery(event_document(), AdobeKeys())
    response = post(app.test_client(), body, headers)
    assert response.status_code == 503
    assert published(app) == []


def test_a_key_host_answering_404_is_a_signature_that_does_not_verify(client, app, key_host, keys):
    body, headers = delivery(event_document(), keys)
    headers["x-adobe-public-key1-path"] = "/prod/keys/pub-key-unknown.pem"
    headers["x-adobe-digital-signature-2"] = garbage_signature()
    assert post(client, body, headers).status_code == 401


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_keys_are_cached_until_they_expire_then_fetched_again(make_app, key_host):
    app = make_app(ADOBE_IO_KEY_CACHE_SECONDS=600)
    clock = Clock()
    app.extensions["magsync.adobe"].keys.clock = clock
    client = app.test_client()
    first_path = key_host.keys.paths[0]

    for n in range(3):
        body, headers = delivery(event_document(event_id=f"evt-{n}"), key_host.keys)
        assert post(client, body, headers).status_code == 202
    assert key_host.paths() == [first_path]  # one fetch: signature 1 verified each time

    clock.now += 599
    body, headers = delivery(event_document(event_id="evt-3"), key_host.keys)
    assert post(client, body, headers).status_code == 202
    assert key_host.paths() == [first_path]

    clock.now += 1
    body, headers = delivery(event_document(event_id="evt-4"), key_host.keys)
    assert post(client, body, headers).status_code == 202
    assert key_host.paths() == [first_path, first_path]


def test_a_rotated_key_verifies_through_the_other_until_the_cache_expires(make_app, key_host):
    app = make_app(ADOBE_IO_KEY_CACHE_SECONDS=600)
    clock = Clock()
    app.extensions["magsync.adobe"].keys.clock = clock
    client = app.test_client()
    one, two = key_host.keys.paths
    body, headers = delivery(event_document(event_id="evt-before"), key_host.keys)
    headers["x-adobe-digital-signature-2"] = garbage_signature()  # warm key 1 only
    assert post(client, body, headers).status_code == 202

    key_host.keys.rotate(0)  # key 1 replaced, same path
    body, headers = delivery(event_document(event_id="evt-after"), key_host.keys)
    assert post(client, body, headers).status_code == 202  # through key 2
    assert key_host.paths() == [one, two]
    only_new_key_1 = {**headers, "x-adobe-digital-signature-2": garbage_signature()}
    assert post(client, body, only_new_key_1).status_code == 401  # the cached key 1 is old

    clock.now += 600
    assert post(client, body, only_new_key_1).status_code == 202  # the new key 1, fetched
    assert key_host.paths() == [one, two, one]


def test_the_key_store_is_bounded(key_host):
    store = adobe.KeyStore(key_host.url, max_age=600, timeout=2, max_keys=1)
    one, two = key_host.keys.paths
    store.get(one)
    store.get(two)
    store.get(one)
    assert key_host.paths() == [one, two, one]


# -- the events ---------------------------------------------------------------------------------


def test_a_wrong_recipient_is_403(client, app, keys):
    body, headers = delivery(event_document(recipient="another-project"), keys)
    response = post(client, body, headers)
    assert response.status_code == 403
    assert response.json["error"] == "wrong_recipient"
    assert published(app) == []


def test_a_missing_recipient_is_403(client, app, keys):
    document = event_document()
    del document["recipientclientid"]
    body, headers = delivery(document, keys)
    assert post(client, body, headers).status_code == 403


def test_the_deprecated_names_are_read_when_the_new_ones_are_gone(client, app, keys):
    document = event_document()
    del document["recipientclientid"], document["eventid"]
    document.update(recipient_client_id=CLIENT_ID, event_id="old-name-event-id")
    body, headers = delivery(document, keys)
    assert post(client, body, headers).status_code == 202
    [(event, _)] = published(app)
    assert event["adobe_event_id"] == "old-name-event-id"


def test_the_event_id_header_serves_a_body_without_one(client, app, keys):
    document = event_document()
    del document["eventid"]
    body, headers = delivery(document, keys)
    headers["x-adobe-event-id"] = "header-event-id"
    assert post(client, body, headers).status_code == 202
    assert published(app)[0][0]["adobe_event_id"] == "header-event-id"


def test_an_event_without_any_event_id_is_422(client, app, keys):
    document = event_document()
    del document["eventid"]
    body, headers = delivery(document, keys)
    response = post(client, body, headers)
    assert response.status_code == 422
    assert "eventid" in response.json["errors"]


def test_a_long_event_id_keeps_the_task_id_within_amqps_limit(client, app, keys):
    long_id = "é" * 300
    body, headers = delivery(event_document(event_id=long_id), keys)
    headers.pop("x-adobe-event-id")
    assert post(client, body, headers).status_code == 202
    [(event, task_id)] = published(app)
    assert len(task_id.encode()) < 255
    assert event["adobe_event_id"].startswith("sha256:")
    assert event["adobe_event_id"] == adobe.event_key(long_id)


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/cloudevents+json; charset=utf-8"]
)
def test_cloudevents_and_json_content_types_are_accepted(client, app, content_type, keys):
    body, headers = delivery(event_document(), keys, content_type=content_type)
    assert post(client, body, headers).status_code == 202


def test_another_content_type_is_415(client, app, keys):
    body, headers = delivery(event_document(), keys, content_type="text/xml")
    assert post(client, body, headers).status_code == 415
    assert published(app) == []


def test_another_event_type_is_422(client, app, keys):
    document = event_document(type="com.adobe.commerce.observer.catalog_product_save_after")
    body, headers = delivery(document, keys)
    assert post(client, body, headers).status_code == 422
    assert published(app) == []


def test_a_body_of_3_mib_is_accepted_on_this_route_only(make_app, client, app, keys):
    document = event_document()
    document["data"]["value"]["customer_note"] = "x" * (3 * 1024 * 1024)
    body, headers = delivery(document, keys)
    assert len(body) > 3 * 1024 * 1024
    assert post(client, body, headers).status_code == 202
    too_big = b" " * (4 * 1024 * 1024 + 1)
    assert post(client, too_big, headers).status_code == 413


def test_a_batch_publishes_each_event_as_its_own_task(
    make_app, key_host, rabbitmq_url, broker_namespace
):
    app = make_app(
        publisher=None,
        CELERY_BROKER_URL=rabbitmq_url,
        MAGSYNC_BROKER_NAMESPACE=broker_namespace,
    )
    events = [
        event_document(event_id=f"batch-{n}", data={"value": {**order_value(), "entity_id": n}})
        for n in (11, 12, 13)
    ]
    body, headers = delivery(events, key_host.keys, event_id_header=False)
    response = post(app.test_client(), body, headers)
    assert response.status_code == 202, response.json
    assert response.json["task_ids"] == [
        "100004711:batch-11",
        "100004711:batch-12",
        "100004711:batch-13",
    ]
    assert queue_depth(rabbitmq_url, f"{broker_namespace}.orders") == 3
    with Connection(rabbitmq_url) as conn:
        channel = conn.default_channel
        ids = []
        for _ in range(3):
            message = channel.message_to_python(
                channel.basic_get(f"{broker_namespace}.orders", no_ack=True)
            )
            ids.append(message.headers["id"])
            assert message.headers["task"] == "magsync.sync_order"
    assert ids == response.json["task_ids"]


def order_value():
    return dict(load_fixture("adobe_io_event.json")["data"]["value"])


def test_a_batch_is_refused_whole_when_one_event_is_bad(client, app, keys):
    events = [event_document(event_id="ok-1"), event_document(event_id="bad", recipient="other")]
    body, headers = delivery(events, keys, event_id_header=False)
    assert post(client, body, headers).status_code == 403
    assert published(app) == []


def test_a_batch_is_503_when_any_event_is_not_confirmed(make_app, keys):
    app = make_app(publisher=RecordingPublisher(fail_at=1))
    events = [event_document(event_id=f"e-{n}") for n in range(3)]
    body, headers = delivery(events, keys, event_id_header=False)
    response = post(app.test_client(), body, headers)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    # The first was published; Adobe's retry publishes it again, and the workers skip the
    # repeat by its event id.
    assert [task_id for _, task_id in published(app)] == ["100004711:e-0"]


@pytest.mark.parametrize("body", [b"[]", b"[1]", b'"text"'])
def test_bodies_that_are_not_events_are_422(client, app, body, keys):
    headers = {"Content-Type": "application/json", **keys.headers(body)}
    assert post(client, body, headers).status_code == 422


# -- which intake is on ---------------------------------------------------------------------------


def test_with_only_the_adobe_intake_the_seed_route_is_404(client):
    response = client.post("/magento/webhook", data=b"{}", headers={"X-Magento-Signature": "x"})
    assert response.status_code == 404


def test_with_only_the_seed_secret_the_adobe_route_is_404(make_settings):
    app = create_app(
        make_settings(MAGENTO_WEBHOOK_SECRET="whsec-only-seed-0123"), publisher=RecordingPublisher()
    )
    client = app.test_client()
    assert client.get(URL, query_string={"challenge": "x"}).status_code == 404
    assert client.post(URL, data=b"{}").status_code == 404


def test_with_neither_intake_the_web_process_refuses_to_start(make_settings):
    with pytest.raises(ConfigError) as info:
        create_app(make_settings(MAGSYNC_RECONCILE_INTERVAL=300), publisher=RecordingPublisher())
    assert "MAGENTO_WEBHOOK_SECRET" in str(info.value)
    assert "ADOBE_IO_CLIENT_ID" in str(info.value)


def test_a_polled_store_without_intake_serves_health_only(make_settings, log_of):
    records = log_of("magsync.web.app")
    rest = {
        "MAGENTO_BASE_URL": "http://127.0.0.1:8081",
        "MAGENTO_CONSUMER_KEY": "k" * 32,
        "MAGENTO_CONSUMER_SECRET": "s" * 32,
        "MAGENTO_ACCESS_TOKEN": "t" * 32,
        "MAGENTO_ACCESS_TOKEN_SECRET": "u" * 32,
    }
    with pytest.raises(ConfigError):
        create_app(make_settings(**rest, MAGSYNC_RECONCILE_INTERVAL=0))
    app = create_app(make_settings(**rest))
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.post("/magento/webhook", data=b"{}").status_code == 404
    assert client.post(URL, data=b"{}").status_code == 404
    notes = [m for m in records.messages() if "no webhook intake is on" in m]
    assert len(notes) == 1


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("http://static.adobeioevents.com", "https"),
        ("https://static.adobeioevents.com/prod/keys", "no path"),
        ("ftp://127.0.0.1", "https"),
    ],
)
def test_the_key_base_url_must_be_https_or_loopback(make_settings, value, problem):
    with pytest.raises(ConfigError, match="ADOBE_IO_PUBLIC_KEY_BASE_URL"):
        make_settings(ADOBE_IO_PUBLIC_KEY_BASE_URL=value)
    assert make_settings(ADOBE_IO_PUBLIC_KEY_BASE_URL="http://127.0.0.1:8081/")


@pytest.mark.parametrize("value", ["0", "86401", "-5"])
def test_the_key_cache_is_at_most_a_day(make_settings, value):
    with pytest.raises(ConfigError, match="ADOBE_IO_KEY_CACHE_SECONDS"):
        make_settings(ADOBE_IO_KEY_CACHE_SECONDS=value)
    assert make_settings(ADOBE_IO_KEY_CACHE_SECONDS=86400).adobe_key_cache_seconds == 86400


def test_a_seed_envelope_is_422_on_this_route(client, app, keys):
    document = {**load_fixture("seed_webhook.json"), "recipientclientid": CLIENT_ID, "eventid": "e"}
    body = json.dumps(document).encode()
    response = post(client, body, {"Content-Type": "application/json", **keys.headers(body)})
    assert response.status_code == 422
    assert "type" in response.json["errors"]
    assert published(app) == []


@pytest.mark.parametrize("signed", [True, False])
def test_deeply_nested_json_is_refused_never_a_500(client, app, keys, signed):
    """Nesting that would exhaust Python's recursion: 400 when signed (as on the seed route),
    401 unsigned (nothing unsigned but a validationUrl is read); nothing published."""
    body = b"[" * 5000 + b"]" * 5000
    headers = {"Content-Type": "application/json", **(keys.headers(body) if signed else {})}
    assert post(client, body, headers).status_code == (400 if signed else 401)
    assert published(app) == []


def test_a_chunked_body_over_the_limit_is_413(client, app, keys):
    """Without a Content-Length Werkzeug would cut the body at the limit without a word."""
    body = b" " * (4 * 1024 * 1024 + 1)
    headers = {"Content-Type": "application/json", **keys.headers(body)}
    answer = client.post("/adobe/events", input_stream=io.BytesIO(body), headers=headers)
    assert answer.status_code == 413
    assert published(app) == []
