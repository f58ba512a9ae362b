import json
import time
import uuid
from pathlib import Path

import pytest
from kombu import Connection

from magsync.settings import Settings
from tests import services

FIXTURES = Path(__file__).parent / "fixtures"

# The Opportunity the seed's example order (fixtures/seed_webhook.json) must become, as the org
# stores it.
SEED_OPPORTUNITY = {
    "Name": "Order 000000123 - Jane Doe",
    "Amount": 99.99,
    "StageName": "Prospecting",
    "CloseDate": "2023-11-26",
    "Magento_Order_ID__c": "000000123",
    "Magento_Customer_Email__c": "jane.doe@example.com",
    "Billing_Street__c": "123 Main St",
    "Billing_City__c": "Anytown",
    "Billing_State__c": "State",
    "Billing_PostalCode__c": "12345",
    "Billing_Country__c": "US",
    "Description": "Product X (SKU: PROD-XYZ, Qty: 1)",
    "LeadSource": "Magento E-commerce",
}


def wait_for(predicate, timeout=30.0, what="condition", interval=0.1):
    """``predicate()``'s first truthy value, polled until ``timeout``; AssertionError after."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def load_fixture(name):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
def rabbitmq_url():
    """URL of the real RabbitMQ (skips, or fails under CI=true, when unreachable)."""
    return services.require_rabbitmq()


@pytest.fixture
def postgres_url():
    """SQLAlchemy URL of the real PostgreSQL (skips, or fails under CI=true, when unreachable)."""
    return services.require_postgres()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A fresh, empty ledger database: a SQLite file, and a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    from tests.databases import postgres_database

    with postgres_database(request.getfixturevalue("postgres_url")) as url:
        yield url


def delete_namespace(url, namespace):
    """Remove a test namespace's queues and exchanges from the broker."""
    with Connection(url) as conn:
        channel = conn.default_channel
        for queue in (f"{namespace}.orders", f"{namespace}.dead"):
            channel.queue_delete(queue)
        for exchange in (namespace, f"{namespace}.dead"):
            channel.exchange_delete(exchange)


@pytest.fixture
def broker_namespace(rabbitmq_url):
    """A fresh broker namespace on the real RabbitMQ, deleted after the test."""
    namespace = f"magsync-test-{uuid.uuid4().hex[:10]}"
    yield namespace
    delete_namespace(rabbitmq_url, namespace)


def queue_depth(url, queue):
    """Messages ready in ``queue`` (0 when it does not exist)."""
    with Connection(url) as conn:
        try:
            _, count, _ = conn.default_channel.queue_declare(queue, passive=True)
        except conn.channel_errors:
            return 0
        return count


@pytest.fixture(scope="session")
def org_state_dir(tmp_path_factory):
    """One state directory (CA, keys) for every sandbox org of the run: keys are slow to make."""
    return tmp_path_factory.mktemp("sandbox-salesforce")


@pytest.fixture
def org_factory(org_state_dir):
    """Start sandbox orgs with the given options; all are stopped after the test."""
    from magsync.sandbox.salesforce import SandboxOrg

    started = []

    def start(**options):
        org = SandboxOrg(state_dir=org_state_dir, **options).start()
        started.append(org)
        return org

    yield start
    for org in started:
        org.stop()


@pytest.fixture
def make_settings():
    """Settings from a mapping of environment variables, as the processes would read them."""

    def make(**env):
        return Settings.from_env({k: str(v) for k, v in env.items()})

    return make


@pytest.fixture
def unused_port():
    """A TCP port on 127.0.0.1 that nothing listens on."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
