"""What an attacker or a careless operator tries: weak or ambiguous secrets, secrets in reprs,
weak Flower credentials, and bodies that used to get a 500 (deep nesting, huge chunked bodies,
long event ids, ids and amounts out of range, versions from the future).

Paths that never publish use a recording publisher; the one about publishing uses RabbitMQ.
"""

import copy
import datetime as dt
import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from magsync.check import CHECKS, run
from magsync.cli import main
from magsync.errors import InvalidOrder
from magsync.magento import envelopes
from magsync.magento.signature import sign
from magsync.mapping.order import load_order
from magsync.settings import ConfigError, Settings
from magsync.web.app import create_app
from tests.helpers import event_for, load_fixture, queue_depth

SECRET = "hardening-secret-0123456789"
SEED = load_fixture("seed_webhook.json")
ADOBE = load_fixture("adobe_io_event.json")


class RecordingPublisher:
    """Stands in for the broker on paths that must publish nothing (or just record what)."""

    def __init__(self):
        self.published = []

    def publish(self, event, task_id):
        self.published.append((event, task_id))
        return task_id

    def close(self):
        pass


@pytest.fixture
def receiver(make_settings):
    """``(client, publisher)`` of a web app with a recording publisher."""

    def build(**env):
        publisher = RecordingPublisher()
        settings = make_settings(**{"MAGENTO_WEBHOOK_SECRET": SECRET, **env})
        return create_app(settings, publisher=publisher).test_client(), publisher

    return build


def post(client, body, secret=SECRET, content_type="application/json"):
    headers = {"Content-Type": content_type, "X-Magento-Signature": sign(body, secret)}
    return client.post("/magento/webhook", data=body, headers=headers)


def seed(**order_changes):
    document = copy.deepcopy(SEED)
    document["order"].update(order_changes)
    return json.dumps(document).encode()


def adobe(**value_changes):
    document = copy.deepcopy(ADOBE)
    document["data"]["value"].update(value_changes)
    return json.dumps(document).encode()


# -- secrets -----------------------------------------------------------------------------------


def test_spaces_belong_to_the_secret_and_do_not_split_it(receiver):
    passphrase = "correct horse battery staple"
    client, publisher = receiver(MAGENTO_WEBHOOK_SECRET=passphrase)
    body = seed()
    assert post(client, body, secret="horse").status_code == 401
    assert post(client, body, secret="correct").status_code == 401
    assert publisher.published == []
    assert post(client, body, secret=passphrase).status_code == 202


def test_rotation_separates_secrets_with_commas_and_trims_them(make_settings):
    settings = make_settings(MAGENTO_WEBHOOK_SECRET=" old-secret-0123456789 , new secret 0123456 ")
    assert settings.receiver_secrets() == ("old-secret-0123456789", "new secret 0123456")


def test_a_secret_holding_a_comma_is_set_as_json(receiver):
    with_comma = "tricky,secret-0123456789"
    client, publisher = receiver(
        MAGENTO_WEBHOOK_SECRET="",
        MAGENTO_WEBHOOK_SECRETS_JSON=json.dumps([with_comma, "the-next-secret-0123456"]),
    )
    body = seed()
    assert post(client, body, secret="tricky").status_code == 401
    assert post(client, body, secret=with_comma).status_code == 202
    assert post(client, body, secret="the-next-secret-0123456").status_code == 202
    assert len(publisher.published) == 2


def test_both_secret_variables_at_once_are_refused(make_settings):
    with pytest.raises(ConfigError, match=r"MAGENTO_WEBHOOK_SECRETS_JSON .*MAGENTO_WEBHOOK_SECRET"):
        make_settings(
            MAGENTO_WEBHOOK_SECRET="a-long-enough-secret-1",
            MAGENTO_WEBHOOK_SECRETS_JSON='["a-long-enough-secret-2"]',
        )


@pytest.mark.parametrize(
    "secret",
    [
        "Q9",
        "fifteen-bytes15",
        "a-long-enough-secret-0123,tiny",
        "ééééééé",  # 7 characters, 14 bytes
    ],
)
def test_a_short_secret_stops_the_web_process_saying_why(make_settings, secret):
    settings = make_settings(MAGENTO_WEBHOOK_SECRET=secret)
    with pytest.raises(ConfigError) as info:
        create_app(settings, publisher=RecordingPublisher())
    message = str(info.value)
    assert "MAGENTO_WEBHOOK_SECRET" in message
    assert "16 bytes" in message
    assert all(part not in message for part in secret.split(","))


def test_secret_length_counts_bytes(receiver):
    client, _ = receiver(MAGENTO_WEBHOOK_SECRET="é" * 8)  # 8 characters, 16 bytes
    assert post(client, seed(), secret="é" * 8).status_code == 202


def test_repr_and_str_of_settings_and_receiver_mask_every_secret(make_settings):
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    values = {
        "MAGENTO_WEBHOOK_SECRET": "webhook-secret-value-0123",
        "SALESFORCE_PRIVATE_KEY": pem,
        "SALESFORCE_CLIENT_SECRET": "sf-client-secret-value",
        "SALESFORCE_REFRESH_TOKEN": "sf-refresh-token-value",
        "MAGENTO_CONSUMER_KEY": "mage-consumer-key-value",
        "MAGENTO_CONSUMER_SECRET": "mage-consumer-secret-value",
        "MAGENTO_ACCESS_TOKEN": "mage-access-token-value",
        "MAGENTO_ACCESS_TOKEN_SECRET": "mage-token-secret-value",
        "CELERY_BROKER_URL": "amqp://magsync:broker-password-value@rabbit//",
        "DATABASE_URL": "postgresql://magsync:db-password-value@db/magsync",
        "SENTRY_DSN": "https://sentry-key-value@sentry.example.com/1",
        "FLOWER_BASIC_AUTH": "ops:flower-password-value",
    }
    settings = make_settings(**values)
    app = create_app(settings.replace(sentry_dsn=None), publisher=RecordingPublisher())
    receiver = app.extensions["magsync.receiver"]
    shown = " ".join([repr(settings), str(settings), repr(receiver), str(receiver)])
    for value in [*values.values(), "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "password-value"]:
        assert value not in shown
    assert "MAGENTO_WEBHOOK_SECRET='(set)'" in repr(settings)
    assert "max_body_bytes" in repr(receiver)


@pytest.mark.parametrize(
    "auth",
    [":", "admin:", ":a-long-password-0123", "admin:short-pw", "admin:a-long-password-0123,ops:"],
)
def test_flower_refuses_weak_credentials(monkeypatch, auth):
    started = []
    monkeypatch.setattr("magsync.cli.exec_process", started.append)
    result = CliRunner().invoke(main, ["flower"], env={"FLOWER_BASIC_AUTH": auth})
    assert result.exit_code != 0
    assert "FLOWER_BASIC_AUTH" in result.output
    assert started == []


def test_flower_starts_with_a_named_user_and_a_long_password(monkeypatch):
    started = []
    monkeypatch.setattr("magsync.cli.exec_process", started.append)
    result = CliRunner().invoke(
        main, ["flower"], env={"FLOWER_BASIC_AUTH": "ops:a-long-password-0123"}
    )
    assert result.exit_code == 0, result.output
    [argv] = started
    assert "flower" in argv and not any("a-long-password" in arg for arg in argv)


def settings_report(**env):
    report = run(env, checks=CHECKS[:1])
    return report, report.render()


def test_check_fails_a_short_webhook_secret_without_printing_it():
    report, text = settings_report(MAGENTO_WEBHOOK_SECRET="old-but-long-secret-01,short1")
    assert report.exit_code == 1
    [line] = [x for x in text.splitlines() if "MAGENTO_WEBHOOK_SECRET" in x]
    assert line.strip().startswith("FAIL")
    assert "secret 2 of 2 is shorter than 16 bytes" in " ".join(text.split())
    assert "short1" not in text and "old-but-long-secret-01" not in text


@pytest.mark.parametrize("auth", ["admin:", ":a-long-password-0123", "admin:short-pw"])
def test_check_fails_weak_flower_credentials_without_printing_them(auth):
    report, text = settings_report(MAGENTO_WEBHOOK_SECRET=SECRET, FLOWER_BASIC_AUTH=auth)
    assert report.exit_code == 1
    [line] = [x for x in text.splitlines() if "FLOWER_BASIC_AUTH" in x]
    assert line.strip().startswith("FAIL")
    assert "short-pw" not in text and "a-long-password" not in text


# -- bodies that used to get a 500 ---------------------------------------------------------------


@pytest.mark.parametrize("depth", [100, 2000])
def test_deeply_nested_json_gets_400(receiver, depth):
    client, publisher = receiver()
    nested = b"[" * depth + b"]" * depth
    body = b'{"event": "sales_order_save_after", "order": {"entity_id": 1, "x": ' + nested + b"}}"
    response = post(client, body)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_json"
    assert "nests deeper" in response.json["message"]
    assert publisher.published == []


def _nested(depth, shapes):
    """JSON text of ``depth`` containers, each inside the last, of the kinds in ``shapes``
    taken in turn, with scalars beside them at every level."""
    text = "0"
    for level in range(depth, 0, -1):
        if shapes[level % len(shapes)] == "dict":
            text = f'{{"n": {level}, "s": "[{{", "child": {text}}}'
        else:
            text = f'[{level}, "]}}", {text}, null]'
    return text


@pytest.mark.parametrize("shapes", [("dict",), ("list",), ("dict", "list")])
def test_json_nesting_is_refused_past_the_limit_exactly(shapes):
    limit = envelopes.MAX_JSON_DEPTH
    assert envelopes.load_json(_nested(limit, shapes).encode())
    with pytest.raises(envelopes.InvalidJson, match="nests deeper"):
        envelopes.load_json(_nested(limit + 1, shapes).encode())
    # A branch one level too deep among shallow siblings counts; many shallow ones do not.
    wide = '{"a": [' + ", ".join(["{}"] * 500) + "]}"
    assert envelopes.load_json(wide.encode())
    beside = f'{{"a": [{{}}, {{"b": {_nested(limit - 2, shapes)}}}, []]}}'
    with pytest.raises(envelopes.InvalidJson):
        envelopes.load_json(beside.encode())


@pytest.fixture
def served(make_settings):
    """A real HTTP server (Werkzeug's) in front of the web app, with a 4 KiB body limit."""
    publisher = RecordingPublisher()
    settings = make_settings(MAGENTO_WEBHOOK_SECRET=SECRET, MAGSYNC_MAX_BODY_BYTES=4096)
    server = make_server("127.0.0.1", 0, create_app(settings, publisher=publisher), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port, publisher
    server.shutdown()
    server.server_close()
    thread.join(5)


def post_chunked(port, body):
    """POST ``body`` with ``Transfer-Encoding: chunked`` and no Content-Length."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    chunks = (body[i : i + 1000] for i in range(0, len(body), 1000))
    headers = {"Content-Type": "application/json", "X-Magento-Signature": sign(body, SECRET)}
    connection.request(
        "POST", "/magento/webhook", body=chunks, headers=headers, encode_chunked=True
    )
    response = connection.getresponse()
    answer = (response.status, json.loads(response.read()))
    connection.close()
    return answer


def test_an_oversized_chunked_body_gets_413(served):
    port, publisher = served
    status, answer = post_chunked(port, seed(padding="x" * 8000))
    assert status == 413
    assert answer["error"] == "payload_too_large"
    assert publisher.published == []


def test_a_chunked_body_within_the_limit_is_accepted(served):
    port, publisher = served
    status, answer = post_chunked(port, seed())
    assert status == 202, answer
    assert len(publisher.published) == 1


def test_a_long_non_ascii_event_id_publishes(make_settings, rabbitmq_url, broker_namespace):
    settings = make_settings(
        MAGENTO_WEBHOOK_SECRET=SECRET,
        CELERY_BROKER_URL=rabbitmq_url,
        MAGSYNC_BROKER_NAMESPACE=broker_namespace,
    )
    app = create_app(settings)
    try:
        document = copy.deepcopy(ADOBE)
        document["id"] = "事" * 200  # 600 bytes of UTF-8
        body = json.dumps(document).encode()
        response = post(app.test_client(), body)
    finally:
        app.extensions["magsync.receiver"].publisher.close()
    assert response.status_code == 202, response.json
    assert len(response.json["task_id"].encode()) <= 255
    assert queue_depth(rabbitmq_url, f"{broker_namespace}.orders") == 1


def test_task_ids_fit_an_amqp_short_string():
    longest = {"increment_id": "號" * 50, "event_id": "😀" * 200}
    task_id = envelopes.task_id(longest)
    assert len(task_id.encode()) <= 255
    assert task_id.startswith("號" * 50 + ":")
    assert envelopes.task_id(dict(longest, event_id="😀" * 199)) != task_id
    assert envelopes.task_id({"increment_id": "000000123", "event_id": "e1"}) == "000000123:e1"


@pytest.mark.parametrize("entity_id", [4711, "4711", "0004711", 1, 4294967295, "4294967295"])
def test_ids_are_json_integers_or_digit_strings(receiver, entity_id):
    client, publisher = receiver()
    for body in (seed(entity_id=entity_id), adobe(entity_id=entity_id)):
        assert post(client, body).status_code == 202
    assert [event["entity_id"] for event, _ in publisher.published] == [int(entity_id)] * 2


@pytest.mark.parametrize(
    "entity_id",
    [0, -1, 4294967296, 2**63, "4294967296", 1.5, "1.5", "1e3", 1e3, True, False, " 4711", "+5",
     "\uff14\uff17\uff11\uff11", "", None],
)  # fmt: skip
def test_other_ids_get_422_and_nothing_is_enqueued(receiver, entity_id):
    client, publisher = receiver()
    for body, path in ((seed(entity_id=entity_id), "order"), (adobe(entity_id=entity_id), "data")):
        response = post(client, body)
        assert response.status_code == 422, body
        errors = response.json["errors"][path]
        errors = errors["value"] if path == "data" else errors
        assert "entity_id" in errors
    assert publisher.published == []


@pytest.mark.parametrize("total", ["1e400", "1" * 30, "NaN", "-Infinity", 1e300, "ninety-nine"])
def test_amounts_that_are_not_magento_amounts_get_422(receiver, total):
    client, publisher = receiver()
    response = post(client, seed(grand_total=total))
    assert response.status_code == 422
    assert "grand_total" in response.json["errors"]["order"]
    body = json.dumps(SEED).replace('"grand_total": 99.99', '"grand_total": 1e400').encode()
    assert post(client, body).status_code == 422
    assert publisher.published == []


def test_an_order_version_from_the_far_future_gets_422(receiver):
    client, publisher = receiver()
    response = post(client, seed(updated_at="9999-12-31 23:59:59"))
    assert response.status_code == 422
    assert "updated_at" in response.json["errors"]["order"]
    assert publisher.published == []


def test_clock_skew_is_allowed_up_to_the_setting(receiver):
    client, publisher = receiver(MAGSYNC_MAX_CLOCK_SKEW=3600)
    now = dt.datetime.now(dt.UTC)
    soon = (now + dt.timedelta(minutes=30)).strftime("%Y-%m-%d %H:%M:%S")
    later = (now + dt.timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    assert post(client, seed(updated_at=soon)).status_code == 202
    assert post(client, seed(updated_at=later)).status_code == 422
    assert post(client, seed(updated_at="yesterday")).status_code == 422
    assert [event["updated_at"] for event, _ in publisher.published] == [soon]


# -- the worker's side: REST orders and queued events ----------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"grand_total": "1e400"},
        {"grand_total": "1" * 30},
        {"base_grand_total": "1e30"},
        {"entity_id": 1.5},
        {"entity_id": "1.5"},
        {"entity_id": True},
        {"entity_id": 2**32},
        {"store_id": 2**32},
        {"store_id": -1},
    ],
)
def test_the_inbound_schema_refuses_what_the_receiver_refuses(change):
    document = dict(copy.deepcopy(SEED["order"]), **change)
    with pytest.raises(InvalidOrder) as info:
        load_order(document)
    assert next(iter(change)) in info.value.errors[0]


def test_adobe_strings_still_load():
    order = load_order(ADOBE["data"]["value"])
    assert (order.entity_id, order.store_id, str(order.grand_total)) == (4711, 2, "1249.500000")


class _OneOrderStore(BaseHTTPRequestHandler):
    """A store whose REST API answers every ``GET /rest/V1/orders/{id}`` with ``order``."""

    order = None

    def do_GET(self):
        body = json.dumps(self.order).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    from magsync.sandbox.salesforce import SandboxOrg

    with SandboxOrg(state_dir=tmp_path_factory.mktemp("hardening-org")) as org:
        yield org


@pytest.fixture
def services(tmp_path):
    from magsync.sync.services import Services

    built = []

    def build(**env):
        values = {"DATABASE_URL": f"sqlite:///{tmp_path / f'ledger-{len(built)}.db'}", **env}
        built.append(Services.build(Settings.from_env(values)))
        return built[-1]

    yield build
    for svc in built:
        svc.close()


def test_an_absurd_amount_from_rest_is_an_invalid_order(org, services):
    from magsync.sync.pipeline import sync_order

    order = dict(copy.deepcopy(SEED["order"]), increment_id="000000801", grand_total="1e400")
    handler = type("Store", (_OneOrderStore,), {"order": order})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rest = {
        "MAGENTO_BASE_URL": f"http://127.0.0.1:{server.server_port}",
        "MAGENTO_CONSUMER_KEY": "ck",
        "MAGENTO_CONSUMER_SECRET": "cs",
        "MAGENTO_ACCESS_TOKEN": "at",
        "MAGENTO_ACCESS_TOKEN_SECRET": "ats",
    }
    calls = org.stats()["api_calls"]
    try:
        with pytest.raises(InvalidOrder) as info:
            sync_order(
                event_for(dict(order, grand_total="99.99")), services(**org.settings(), **rest)
            )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert info.value.reason == "invalid_order"
    assert "grand_total" in info.value.errors[0]
    assert org.stats()["api_calls"] == calls


def test_a_queued_webhook_version_from_the_future_is_an_invalid_order(org, services):
    from magsync.sync.pipeline import sync_order

    order = dict(copy.deepcopy(SEED["order"]), increment_id="000000802")
    order["updated_at"] = "9999-12-31 23:59:59"
    svc = services(**org.settings())
    with pytest.raises(InvalidOrder) as info:
        sync_order(event_for(order), svc)
    assert "updated_at" in info.value.errors[0]
    svc.ledger.ready()
    assert svc.ledger.order("000000802") is None


def test_with_rest_settings_the_store_version_wins_over_the_webhook(org, services):
    from magsync.sandbox.magento import SandboxStore
    from magsync.sync.pipeline import sync_order

    with SandboxStore(seed=21) as store:
        placed = store.place_order()
        forged = event_for(dict(placed, updated_at="9999-12-31 23:59:59"))
        svc = services(**org.settings(), **store.settings())
        summary = sync_order(forged, svc)
        truth = store.order(placed["entity_id"])["updated_at"]
    assert summary["source"] == "rest"
    assert summary["updated_at"] == truth
    state = svc.ledger.order(placed["increment_id"])
    assert state.updated_at.strftime("%Y-%m-%d %H:%M:%S") == truth
