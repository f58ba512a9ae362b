import uuid

import pytest

from magsync.settings import Settings
from tests import services
from tests.helpers import delete_namespace

# Tests that ask for these fixtures need the service; they carry its marker, so that
# ``pytest -m "not rabbitmq and not postgres"`` runs exactly the tests that need neither.
SERVICE_MARKERS = {"rabbitmq_url": "rabbitmq", "postgres_url": "postgres"}


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, marker in SERVICE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


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


@pytest.fixture
def broker_namespace(rabbitmq_url):
    """A fresh broker namespace on the real RabbitMQ, deleted after the test."""
    namespace = f"magsync-test-{uuid.uuid4().hex[:10]}"
    yield namespace
    delete_namespace(rabbitmq_url, namespace)


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
