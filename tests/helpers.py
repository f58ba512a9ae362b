"""What tests share besides fixtures: payload files, the seed's expected Opportunity, waiting on
a condition with a deadline, a broker namespace's queues, a clock the test moves by hand, and a
publisher that enqueues nothing.

Test modules import these from here, never from a ``conftest.py`` (pytest loads conftest files
itself; importing one as a module loads it twice).
"""

import json
import time
from pathlib import Path

from kombu import Connection

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


# The org refuses orders above an amount for good, as a merchant's org with an approval rule
# does: tests make an order that large to have Salesforce refuse its record.
APPROVAL_LIMIT = 250_000
APPROVAL_RULE = {
    "name": "Large_orders_need_approval",
    "field": "Amount",
    "operator": "gt",
    "value": APPROVAL_LIMIT,
    "message": "Orders over 250,000 need a manual approval.",
    "errorDisplayField": "Amount",
}


def approval_schema():
    """The sandbox org's packaged schema with ``APPROVAL_RULE`` on Opportunity."""
    from magsync.sandbox.salesforce.schema import packaged_schema

    schema = packaged_schema()
    schema["sobjects"]["Opportunity"]["validationRules"] = [APPROVAL_RULE]
    return schema


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


def delete_namespace(url, namespace):
    """Remove a test namespace's queues and exchanges from the broker."""
    with Connection(url) as conn:
        channel = conn.default_channel
        for queue in (f"{namespace}.orders", f"{namespace}.backfill", f"{namespace}.dead"):
            channel.queue_delete(queue)
        control = (f"{namespace}.pidbox", f"reply.{namespace}.pidbox")  # remote control
        for exchange in (namespace, f"{namespace}.dead", *control):
            channel.exchange_delete(exchange)


def queue_depth(url, queue):
    """Messages ready in ``queue`` (0 when it does not exist)."""
    with Connection(url) as conn:
        try:
            _, count, _ = conn.default_channel.queue_declare(queue, passive=True)
        except conn.channel_errors:
            return 0
        return count


def queue_consumers(url, queue):
    """Consumers subscribed to ``queue`` (0 when it does not exist)."""
    with Connection(url) as conn:
        try:
            _, _, consumers = conn.default_channel.queue_declare(queue, passive=True)
        except conn.channel_errors:
            return 0
        return consumers


class Clock:
    """A monotonic clock the test moves by hand: ``clock()`` is the time, ``clock.now += 5``
    or ``clock.sleep(5)`` moves it (``sleep`` returns at once)."""

    def __init__(self, now=1000.0):
        self.now = now
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += max(0.0, seconds)


class FakePublisher:
    """A stand-in for ``magsync.messaging.broker.Publisher`` for web tests that need no broker.

    ``create_app(settings, publisher=FakePublisher())`` builds a receiver that never connects to
    RabbitMQ. ``publish(event, task_id)`` records the pair in ``published`` (in call order) and
    answers like the real one (the task id); so a test proves that a request enqueued nothing by
    ``publisher.published == []``. ``close()`` only records that it was called.
    """

    def __init__(self):
        self.published = []
        self.closed = False

    def publish(self, event, task_id):
        self.published.append((event, task_id))
        return task_id

    def close(self):
        self.closed = True


def event_for(order):
    """The task payload a seed webhook of ``order`` becomes (what the receiver enqueues)."""
    return {
        "event": "sales_order_save_after",
        "entity_id": order["entity_id"],
        "increment_id": order["increment_id"],
        "updated_at": order.get("updated_at"),
        "order": order,
    }
