import pytest

from tests import services


@pytest.fixture
def rabbitmq_url():
    """URL of the real RabbitMQ (skips, or fails under CI=true, when unreachable)."""
    return services.require_rabbitmq()


@pytest.fixture
def postgres_url():
    """SQLAlchemy URL of the real PostgreSQL (skips, or fails under CI=true, when unreachable)."""
    return services.require_postgres()
