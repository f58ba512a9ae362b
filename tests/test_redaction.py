"""Buyer data stays out of logs, Sentry, Celery's task events (Flower) and ``magsync dead list``;
the operator's own tools (``magsync dead show``, the ledger) keep it. Log lines cannot be forged
with control characters."""

import json
import logging
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import sentry_sdk
from celery.exceptions import Reject
from click.testing import CliRunner

from magsync import alerts, logs, redact
from magsync.errors import DeadLetter
from magsync.ledger.locks import FileLocks, LockTimeout
from magsync.messaging.dead_letters import Letter
from magsync.salesforce.soql import literal
from magsync.worker.task import redacting
from tests.helpers import load_fixture, wait_for
from tests.sentry_stub import SentryStub

EMAIL = "quillon.zabrisky@hardening.example"
PHONE = "+44 7700 900461"
STREET = "17 Quillfeather Mews"
LASTNAME = "Zabrisky"
BUYER = (EMAIL, PHONE, STREET, LASTNAME)


def buyer_order(**changes):
    order = load_fixture("seed_webhook.json")["order"]
    order.update(customer_email=EMAIL, customer_firstname="Quillon", customer_lastname=LASTNAME)
    order["billing_address"].update(
        firstname="Quillon", lastname=LASTNAME, street=[STREET, "Flat 2"], telephone=PHONE
    )
    order.update(changes)
    return order


def salesforce_error(code="INVALID_EMAIL_ADDRESS"):
    """A Salesforce error quoting the buyer, as validation rules and triggers do."""
    message = f"Email: invalid email address: {EMAIL} (phone {PHONE}, {STREET}, {LASTNAME})"
    return [{"errorCode": code, "message": message, "fields": ["Email"]}]


def leaked(text):
    return [value for value in BUYER if value.lower() in text.lower()]


# -- the redaction function --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("INVALID_EMAIL_ADDRESS: jane.doe@example.com", "jane.doe@example.com"),
        ('refused "Jane Doe"@example.com', '"Jane Doe"@example.com'),
        ("WHERE Email = 'o\\'brien@example.ie'", "brien@example.ie"),
        ("q=SELECT+Id+WHERE+Email+%3D+%27jane.doe%40example.com%27", "jane.doe%40example.com"),
        ("call +1 555 123 4567", "555 123 4567"),
        ("phone=+44 20 7946 0958", "7946 0958"),
        ("(555) 123-4567", "123-4567"),
        ("555.123.4567", "555.123.4567"),
        ("tel 030 1234567", "030 1234567"),
        ("tel 06 12 34 56 78", "06 12 34 56 78"),
        ("+4930123456", "+4930123456"),
    ],
)
def test_emails_and_phones_are_redacted_by_pattern(text, hidden):
    assert hidden not in redact.redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "order 000000123 dead-lettered",
        "order 000000123-1 replaces 000000123",
        "updated_at=2026-11-28T21:24:52Z first_failed_at=2023-10-26 10:00:00",
        "Opportunity 0065g0000yCLmjlAAD api_usage=12/15000",
        "task 5000000001:00108d3c entity 4294967295",
        "event 4f2a9c1e-8d3b-4e57-a1c6-2b9f0e7d5a31",
        "amount 99.99 qty 1 postcode 12345 ip 10.0.0.12 countdown=4",
        "worker w1-abc123@vm ready.",
        "Description Product X (SKU: PROD-XYZ, Qty: 1)",
    ],
)
def test_what_is_not_buyer_data_stays_readable(text):
    assert redact.redact(text) == text


def test_the_current_orders_values_are_redacted_in_every_written_form():
    texts = [
        f"street {STREET.upper()}",
        "q=" + STREET.replace(" ", "+"),
        f"name Quillon {LASTNAME}",
        f"tel {PHONE.replace(' ', '')}",
    ]
    with redact.buyer(
        buyer_order(billing_address={"street": [STREET], "telephone": "447700900461"})
    ):
        redacted = [redact.redact(text) for text in texts]
    assert not any(leaked(text) for text in redacted), redacted
    assert "Quillon" not in " ".join(redacted)
    # Outside the order's handling only patterns apply.
    assert STREET in redact.redact(f"street {STREET}")


def test_values_remembered_later_are_redacted_too():
    with redact.buyer({"customer_email": "first@example.com"}):
        redact.remember({"billing_address": {"street": ["9 Other Road"]}})
        assert redact.redact("9 Other Road") == "[redacted]"
    assert redact.redact("9 Other Road") == "9 Other Road"


def test_a_batchs_many_buyers_are_each_redacted_whole_and_nothing_else_is():
    """A batch's thread knows hundreds of buyers whose values share prefixes (Number 1, Number
    12, Number 120): each is redacted whole, the longest first; a word that only begins with one
    is not."""
    with redact.buyer():
        for n in range(300):
            redact.remember({"customer_lastname": f"Number {n}", "street": [f"{n} Elm Lane"]})
        assert redact.redact("to Number 12 at 120 Elm Lane") == "to [redacted] at [redacted]"
        assert redact.redact("NUMBER 7;Number 299") == "[redacted];[redacted]"
        assert redact.redact("Number 3000 and Number 12a") == "Number 3000 and Number 12a"
        assert redact.redact("q=Number+45") == "q=[redacted]"
        # Values without an ASCII word, and lines that are not ASCII, always take the pattern.
        redact.remember({"customer_firstname": "Ærø", "customer_lastname": "Weiß-Öz"})
        assert (
            redact.redact("to ærø, WEISS-ÖZ and weiß-öz")
            == "to [redacted], WEISS-ÖZ and [redacted]"
        )
        assert redact.redact('{"name": "\\u00c6r\\u00f8"}') == '{"name": "[redacted]"}'


# Values as a batch's buyers bring them: shared words and prefixes, digits, non-ASCII letters
# (some that match ASCII ones case-insensitively, some that do not), a word of one value inside
# another, and words that ordinary log lines hold too.
_BATCH_VALUES = [
    "Große Bäckerstraße 3",
    "ul. Świętokrzyska 54",
    "Calle de Peñalver, 102",
    "梅田19-2-1",
    "Je\u017f\u017fica Fi\u017fher",
    "\u212aelvin 3",
    "İpek Y\u0131lmaz",
    "3 Main Street",
    "Main",
    "Mainz Road 12",
    "buyer7@bench.example.com",
    "o'brien@example.ie",
    "+49 30 1234567",
    "555-0123",
    "Number 12",
    "Number 120",
]
_PIECES = _BATCH_VALUES + [value.upper() for value in _BATCH_VALUES] + [
    "3", "12", "54", "120", "main", "Street", "GROSSE", "road", "number", "Number", "batch=200",
    "order=000000012", "Jessica", "JESSICA", "kelvin", "KELVIN", "ipek", "IPEK", "yilmaz",
    "buyer7", "bench.example.com", "o'brien", "%40", "+49", "1234567", "\\u00df", "%C3%9F",
    "梅田19", "-", ",", ";", "'", '"', "=", "/",
]  # fmt: skip


def _with_whole_pattern(text, whole):
    """``redact(text)`` as it was when every line took the batch's whole pattern."""
    lowered = text.lower()
    if any(hint in lowered for hint in redact._SECRET_HINTS):
        text = redact._SECRETS.sub(redact.FILTERED, text)
    text = whole.sub(redact.REDACTED, redact.mask_url(text, mask=redact.FILTERED))
    if "@" in text or "%40" in text:
        text = redact._EMAILS.sub(redact.EMAIL, text)
    return redact._PHONES.sub(redact._phone, text)


def test_a_line_is_redacted_as_the_batchs_whole_pattern_would_and_only_scanned_where_needed():
    """Each line is matched with a small pattern of the forms whose words it holds, with the
    whole pattern's result on lines built from pieces of the values and of ordinary log lines;
    a line that names no buyer never has the batch's whole pattern compiled for it."""
    rng = random.Random(12)
    with redact.buyer():
        for value in _BATCH_VALUES:
            redact.remember({"street": [value]})
        known = redact._known.get()
        quiet = ["order=000000012 batch=200 synced=3 at 12:54", "Number 1200 on 3rd Mainz-Roads"]
        assert [redact.redact(text) for text in quiet] == quiet
        assert known._pattern is None  # no line named a buyer: never compiled

        assert redact.redact("to JESSICA FISHER, 3 main street") == "to [redacted], [redacted]"
        assert redact.redact("kelvin 3 and grosse backerstrasse 3") == (
            "[redacted] and grosse backerstrasse 3"
        )
        lines = [" ".join(rng.choices(_PIECES, k=rng.randint(1, 6))) for _ in range(3000)]
        whole = known.pattern()
        for text in lines:
            assert redact.redact(text) == _with_whole_pattern(text, whole), text


def test_a_character_counts_as_the_ascii_one_it_matches_case_insensitively():
    assert {c: redact._ascii_char(c) for c in "ßüéµ梅\u0131\u017f\u212aİaZ"} == {
        "ß": None,
        "ü": None,
        "é": None,
        "µ": None,
        "梅": None,
        "\u0131": "i",
        "\u017f": "s",
        "\u212a": "k",
        "İ": "i",
        "a": "a",
        "Z": "z",
    }


def test_secrets_are_masked_by_the_same_function():
    text = "Authorization: Bearer 00D5g!AQ4AQ.x-y and amqp://guest:hunter2@rabbit//"
    assert "00D5g" not in redact.redact(text) and "hunter2" not in redact.redact(text)
    assert alerts.mask is redact.redact


def test_the_grant_name_is_not_taken_for_a_bearer_token():
    line = "salesforce authentication failed grant=jwt-bearer reason=token_endpoint_unreachable"
    assert redact.redact(line) == line


# -- log lines and lock messages ----------------------------------------------------------------


def format_record(message, *args, exc_info=None, **extra):
    record = logging.LogRecord("magsync.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    if exc_info:
        record.exc_info = exc_info
    return logs.KeyValueFormatter().format(record)


def test_control_characters_are_escaped_in_logs():
    try:
        raise ValueError("bad\x1b]0;owned\x07 value\rfake line")
    except ValueError as exc:
        line = format_record(
            "webhook %s", "\x1b[2Jcleared", order="123\x1b[31m", note="a\nb\u202eevil", exc_info=(
                type(exc), exc, exc.__traceback__)
        )  # fmt: skip
    assert "\x1b" not in line and "\r" not in line and "\x07" not in line
    assert "\u202e" not in line
    first, *traceback = line.split("\n")
    assert "\\x1b[2Jcleared" in first and "order=123\\x1b[31m" in first
    assert "\\n" in first and "\\u202e" in first
    assert traceback[-1] == "ValueError: bad\\x1b]0;owned\\x07 value\\rfake line"


def test_a_busy_customer_lock_does_not_name_the_buyer(tmp_path):
    locks = FileLocks(tmp_path / "ledger.db.locks", timeout=0.2)
    holder = threading.Event()
    release = threading.Event()

    def hold():
        with locks.session() as session:
            session.acquire("customer", "jane.doe@example.com")
            holder.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holder.wait(10)
        with locks.session() as session, pytest.raises(LockTimeout) as info:
            session.acquire("customer", "jane.doe@example.com")
    finally:
        release.set()
        thread.join(10)
    assert "jane.doe" not in str(info.value)
    assert "customer" in str(info.value)


# -- outlets -----------------------------------------------------------------------------------


def formatted(message, **extra):
    record = logging.LogRecord("celery.app.trace", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return logs.KeyValueFormatter().format(record)


def test_every_log_record_is_redacted():
    with redact.buyer(buyer_order()):
        line = formatted(
            f"Task magsync.sync_order[x] raised expected: DeadLetter('{salesforce_error()}')",
            error=STREET,
        )
    assert not leaked(line), line


def test_the_dead_letter_listing_is_redacted_and_show_keeps_everything():
    error = DeadLetter("Salesforce 400: " + salesforce_error()[0]["message"])
    letter = Letter(
        id="000000123:t1",
        task="magsync.sync_order",
        args=[{"increment_id": "000000123", "order": buyer_order()}],
        kwargs={},
        headers={},
        reason={**error.describe(), "attempts": 1},
        source="worker",
    )
    assert not leaked(json.dumps(letter.summary()))
    assert letter.summary()["order"] == "000000123"
    assert set(leaked(json.dumps(letter.describe()))) == set(BUYER)


def test_a_tasks_failure_leaves_it_redacted_and_without_causes():
    @redacting
    def task(self, event):
        try:
            raise KeyError(EMAIL)
        except KeyError:
            raise DeadLetter(salesforce_error()[0]["message"], reason="X") from None

    @redacting
    def rejected(self, event):
        raise Reject(DeadLetter(f"not confirmed for {STREET}"), requeue=False)

    event = {"increment_id": "000000123", "order": buyer_order()}
    with pytest.raises(DeadLetter) as info:
        task(None, event)
    assert not leaked(str(info.value)) and info.value.__suppress_context__
    assert info.value.reason == "X"
    with pytest.raises(Reject) as info:
        rejected(None, event)
    assert not leaked(repr(info.value.reason))


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def sentry():
    stub = SentryStub().start()
    yield stub
    sentry_sdk.get_client().close(timeout=2)
    sentry_sdk.init()  # an inactive client again
    stub.stop()


@pytest.fixture
def echo_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_sentry_events_are_redacted_all_through(sentry, make_settings, echo_server):
    alerts.init(make_settings(SENTRY_DSN=sentry.dsn))
    error = DeadLetter(
        "Salesforce 400: " + salesforce_error()[0]["message"],
        reason="INVALID_EMAIL_ADDRESS",
        errors=salesforce_error(),
        status=400,
    )
    with sentry_sdk.isolation_scope(), redact.buyer(buyer_order()):
        soql = "SELECT Id FROM Contact WHERE Email = " + literal(EMAIL)  # noqa: S608
        requests.get(f"{echo_server}/services/data/v58.0/query", params={"q": soql}, timeout=5)
        logging.getLogger("magsync.test").warning("buyer refused", extra={"street": STREET})
        sentry_sdk.set_tag("buyer", EMAIL)
        sentry_sdk.set_extra("address", {"street": [STREET], "telephone": PHONE})
        sentry_sdk.set_context("order", {"name": f"Quillon {LASTNAME}"})
        alerts.capture_dead_letter(error, "000000123")
    sentry_sdk.flush(timeout=5)
    [event] = sentry.wait_for(1)
    assert event["tags"]["order"] == "000000123"
    crumbs = event["breadcrumbs"]["values"]
    assert any(c.get("category") == "httplib" for c in crumbs)
    assert any(c.get("message") == "buyer refused" for c in crumbs)
    assert event["contexts"]["dead_letter"]["errors"][0]["errorCode"] == "INVALID_EMAIL_ADDRESS"
    raw = b"".join(sentry.raw()).decode("utf-8", "replace")
    assert not leaked(raw), [v for v in BUYER if v in raw]
    assert not leaked(raw.replace("%40", "@").replace("+", " ").replace("%20", " "))


# -- end to end: real worker processes -----------------------------------------------------------


class CeleryEvents:
    """Every Celery event on the broker (what Flower shows), captured in a thread."""

    def __init__(self, app):
        self.app = app
        self.events = []
        self.receiver = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with self.app.connection_for_read() as connection:
            self.receiver = self.app.events.Receiver(connection, handlers={"*": self.events.append})
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def start(self):
        self.thread.start()
        probe = f"probe-{time.monotonic_ns()}"

        def probe_arrived():
            with self.app.events.default_dispatcher() as dispatcher:
                dispatcher.send("magsync-probe", probe=probe)
            return any(e.get("probe") == probe for e in self.events)

        wait_for(probe_arrived, timeout=20, interval=0.5, what="the event receiver")
        return self

    def of(self, task_id, kind):
        return [e for e in self.events if e.get("uuid") == task_id and e.get("type") == kind]

    def stop(self):
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.thread.join(10)


@pytest.mark.slow
def test_buyer_data_never_leaves_through_a_dead_letter_or_a_retry(tmp_path):
    from magsync.cli import main
    from magsync.messaging.app import create_celery
    from magsync.messaging.broker import Publisher
    from magsync.messaging.dead_letters import DeadLetters
    from magsync.sandbox.salesforce import SandboxOrg
    from magsync.settings import Settings
    from tests import processes, services
    from tests.helpers import delete_namespace

    services.require_rabbitmq()
    namespace = f"magsync-pii-{time.monotonic_ns() % 10**8:08d}"
    sentry = SentryStub().start()
    org = SandboxOrg(state_dir=tmp_path / "org").start()
    env = {
        **org.settings(),
        "CELERY_BROKER_URL": services.RABBITMQ_URL,
        "MAGSYNC_BROKER_NAMESPACE": namespace,
        "SENTRY_DSN": sentry.dsn,
        "MAGSYNC_RETRY_BACKOFF": "1",
        "MAGSYNC_RETRY_BACKOFF_MAX": "1",
        "LOG_LEVEL": "INFO",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
    }
    settings = Settings.from_env(env)
    celery = create_celery(settings)
    publisher = Publisher(celery, celery.magsync_topology, 5)
    events = CeleryEvents(celery).start()
    worker = None
    try:
        worker = processes.start_worker(env, tmp_path, name="pii", concurrency=1)

        def publish(number, entity_id):
            order = buyer_order(increment_id=number, entity_id=entity_id)
            event = {
                "event": "sales_order_save_after",
                "entity_id": entity_id,
                "increment_id": number,
                "updated_at": order["updated_at"],
                "order": order,
            }
            return publisher.publish(event, f"{number}:t1")

        # A permanent refusal quoting the buyer: dead-lettered, one Sentry event.
        org.add_fault(
            method="*", path="/services/data/", kind="status", status=400,
            body=salesforce_error(), count=1,
        )  # fmt: skip
        dead_task = publish("710000001", 71001)
        dead = DeadLetters(celery, celery.magsync_topology)
        [letter] = wait_for(lambda: dead.browse(), what="the dead letter")
        # Transient failures quoting the buyer: retried twice, then synced.
        org.add_fault(
            method="*", path="/services/data/", kind="status", status=503,
            body=salesforce_error("SERVER_UNAVAILABLE"), count=2,
        )  # fmt: skip
        retried_task = publish("710000002", 71002)
        wait_for(
            lambda: [r for r in org.records("Opportunity") if r["Name"].startswith("Order 7100")],
            what="the retried order in Salesforce",
        )
        wait_for(lambda: events.of(dead_task, "task-failed"), what="the task-failed event")
        wait_for(lambda: events.of(retried_task, "task-succeeded"), what="the task-succeeded event")
        assert len(events.of(retried_task, "task-retried")) == 2
        wait_for(
            lambda: [e for e in sentry.events() if e["tags"].get("order") == "710000001"],
            what="the dead letter's Sentry event",
        )
        sentry_sdk.flush(timeout=2)
        cli_env = {k: str(v) for k, v in env.items()}
        listed = CliRunner().invoke(main, ["dead", "list"], env=cli_env)
        shown = CliRunner().invoke(main, ["dead", "show", letter.id], env=cli_env)
    finally:
        events.stop()
        if worker is not None:
            worker.stop()
        publisher.close()
        org.stop()
        sentry.stop()
        delete_namespace(services.RABBITMQ_URL, namespace)

    log = worker.log()
    assert "order dead-lettered" in log and "raised expected: DeadLetter(" in log
    assert "order sync will be retried" in log
    assert not leaked(log), [line for line in log.splitlines() if leaked(line)]
    raw = b"".join(sentry.raw()).decode("utf-8", "replace")
    assert not leaked(raw) and not leaked(raw.replace("%40", "@").replace("+", " "))
    ours = [e for e in events.events if e.get("uuid") in (dead_task, retried_task)]
    assert not leaked(json.dumps(ours)), ours
    assert listed.exit_code == 0 and "order=710000001" in listed.output
    assert not leaked(listed.output)
    # The operator's own tool keeps everything.
    assert shown.exit_code == 0 and set(leaked(shown.output)) == set(BUYER)
