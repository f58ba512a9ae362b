"""Sandbox Magento store fixtures: a running store, signed REST calls, a webhook receiver."""

import pytest

from magsync.sandbox.magento import SandboxStore
from tests.sandbox.magento.helpers import FAST_RETRY, WEBHOOK_SECRET, Receiver, Rest


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def store(receiver):
    """A started store sending seed webhooks to ``receiver``, with fast retries."""
    with SandboxStore(
        webhook_url=receiver.url,
        webhook_secret=WEBHOOK_SECRET,
        seed=11,
        retry=FAST_RETRY,
        senders=4,
    ) as store:
        yield store


@pytest.fixture
def quiet_store():
    """A started store that sends no webhooks."""
    with SandboxStore(seed=5) as store:
        yield store


@pytest.fixture
def rest(quiet_store):
    client = Rest(quiet_store)
    yield client
    client.close()
