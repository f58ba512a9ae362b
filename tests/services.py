"""Reaching the machine's real services from tests.

A test that needs RabbitMQ or PostgreSQL is skipped with a reason when the service cannot be
reached, except under ``CI=true``, where a missing service is a failure.
"""

import os
import socket
from urllib.parse import urlsplit

import pytest

RABBITMQ_URL = os.environ.get("MAGSYNC_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
POSTGRES_URL = os.environ.get(
    "MAGSYNC_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def reachable(url, default_port, timeout=1.0):
    """True when a TCP connection to the URL's host and port succeeds."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout):
            return True
    except OSError:
        return False


def unavailable(reason):
    """Skip the calling test for ``reason``; under CI=true, fail it instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: services must run)", pytrace=False)
    pytest.skip(reason)


def require(name, url, default_port):
    """Skip (or fail under CI=true) the calling test when the service is unreachable."""
    if reachable(url, default_port):
        return url
    where = urlsplit(url)
    unavailable(f"{name} is not reachable at {where.hostname}:{where.port or default_port}")


def require_rabbitmq():
    return require("RabbitMQ", RABBITMQ_URL, 5672)


def require_postgres():
    return require("PostgreSQL", POSTGRES_URL, 5432)


def require_rabbitmqctl():
    """The ``rabbitmqctl`` command of the local RabbitMQ (to change broker settings in tests)."""
    import shutil

    require_rabbitmq()
    path = shutil.which("rabbitmqctl")
    if path:
        return path
    unavailable("rabbitmqctl is not on PATH")


def require_rabbitmq_server():
    """The folder of the ``rabbitmq-server`` and ``rabbitmqctl`` scripts, for a test that runs
    a private RabbitMQ node of its own (``tests.rabbitmq_node``)."""
    from tests.rabbitmq_node import find_scripts

    folder = find_scripts()
    if folder is None:
        unavailable("rabbitmq-server is not installed: the test runs a private RabbitMQ node")
    return folder
