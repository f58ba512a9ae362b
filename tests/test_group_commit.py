"""Group-commit publishing on the real RabbitMQ: every request gets its own message's outcome
(confirm, nack, return, lost connection, no confirm in time), requests that arrive together are
confirmed together, forked processes publish on their own, and a worker consumes the result."""

import copy
import json
import os
import subprocess
import threading

import amqp
import pytest
from kombu import Queue

from magsync.magento.signature import sign
from magsync.messaging.app import create_celery
from magsync.messaging.broker import BrokerUnavailable, Topology
from magsync.messaging.group_commit import Delivery, GroupCommitPublisher, InFlight
from magsync.settings import Settings
from magsync.web.app import create_app
from tests import services
from tests.helpers import load_fixture, queue_depth, wait_for
from tests.tcpproxy import TcpProxy

SEED = load_fixture("seed_webhook.json")


def event(n):
    order = copy.deepcopy(SEED["order"])
    order.update(entity_id=n, increment_id=f"{n:09d}")
    return {
        "event": "sales_order_save_after",
        "entity_id": n,
        "increment_id": order["increment_id"],
        "updated_at": order["updated_at"],
        "order": order,
    }


def queued_task_ids(queue):
    """The task ids of every message in ``queue``, in order (the queue is emptied)."""
    ids = []
    with amqp.Connection("127.0.0.1:5672") as conn:
        channel = conn.channel()
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            ids.append(message.headers["id"])
    return ids


class SmallQueue(Topology):
    """A work queue that holds two messages and refuses (nacks) any more."""

    @property
    def work_queue(self):
        return Queue(
            f"{self.namespace}.orders",
            self.exchange,
            routing_key=self.work_routing_key,
            durable=True,
            queue_arguments={"x-max-length": 2, "x-overflow": "reject-publish"},
        )


class Unbound(Topology):
    """A work queue bound under another routing key: orders reach no queue."""

    @property
    def work_queue(self):
        queue = super().work_queue
        return Queue(
            queue.name,
            self.exchange,
            routing_key="elsewhere",
            durable=True,
            queue_arguments=queue.queue_arguments,
        )


@pytest.fixture
def publishers(rabbitmq_url, broker_namespace):
    """Make group-commit publishers on the broker (or another URL) for this test's namespace."""
    made = []

    def make(url=rabbitmq_url, topology=Topology, timeout=5):
        settings = Settings.from_env(
            {"CELERY_BROKER_URL": url, "MAGSYNC_BROKER_NAMESPACE": broker_namespace}
        )
        celery = create_celery(settings)
        publisher = GroupCommitPublisher(celery, topology(broker_namespace), timeout)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.close()


@pytest.fixture
def proxy():
    services.require_rabbitmq()
    proxy = TcpProxy("127.0.0.1", 5672).start()
    yield proxy
    proxy.close()


def in_threads(publish, items):
    """Call ``publish(item)`` for each item in its own thread, all at once; returns
    ``{item: None or the BrokerUnavailable}``."""
    outcomes = {}
    start = threading.Barrier(len(items))

    def run(item):
        start.wait()
        try:
            publish(item)
            outcomes[item] = None
        except BrokerUnavailable as exc:
            outcomes[item] = exc

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


# -- settling by delivery tag (no broker) ---------------------------------------------------------


def test_each_message_is_settled_by_the_broker_s_answer_for_its_tag():
    settled = {}
    inflight = InFlight(lambda delivery, error: settled.setdefault(delivery.task_id, error))
    for n in range(1, 8):
        inflight.add(Delivery(None, f"t{n}", deadline=0))
    inflight.ack(2, multiple=True)  # t1, t2
    inflight.nack(4)  # t4 only
    inflight.returned("t5", "NO_ROUTE")  # a return comes before the ack of its message
    inflight.ack(5)
    inflight.nack(6, multiple=True)  # t3 and t6
    inflight.ack(6, multiple=True)  # nothing left up to 6: ignored
    assert settled == {
        "t1": None,
        "t2": None,
        "t4": "nacked by the broker",
        "t5": "returned by the broker: NO_ROUTE",
        "t3": "nacked by the broker",
        "t6": "nacked by the broker",
    }
    assert len(inflight) == 1  # t7 still waits


def test_a_return_marks_the_oldest_unconfirmed_message_of_that_task():
    settled = {}
    inflight = InFlight(lambda delivery, error: settled.setdefault(id(delivery), error))
    first, second = Delivery(None, "same", 0), Delivery(None, "same", 0)
    inflight.add(first)
    inflight.add(second)
    inflight.returned("same", "NO_ROUTE")
    inflight.ack(2, multiple=True)
    assert settled == {id(first): "returned by the broker: NO_ROUTE", id(second): None}


# -- outcomes on the real broker --------------------------------------------------------------


def test_many_threads_publishing_at_once_are_all_confirmed_and_queued_once(
    rabbitmq_url, broker_namespace, publishers
):
    publisher = publishers()
    numbers = range(1, 201)

    def publish_ten(first):
        for n in range(first, first + 10):
            publisher.publish(event(n), f"{n:09d}:t")

    outcomes = in_threads(publish_ten, list(numbers[::10]))
    assert all(outcome is None for outcome in outcomes.values())
    ids = queued_task_ids(f"{broker_namespace}.orders")
    assert sorted(ids) == sorted(f"{n:09d}:t" for n in numbers)
    stats = publisher.stats()
    assert stats["messages"] == 200
    assert stats["batches"] < 200  # confirms were awaited for several messages at once


def test_requests_that_arrive_during_a_confirm_wait_are_published_together(
    proxy, publishers, rabbitmq_url, broker_namespace
):
    publisher = publishers(url=proxy.url())
    publisher.publish(event(1), "first:t")  # connected
    proxy.hold("to_client")  # the broker's confirms wait in the proxy
    first = threading.Thread(target=publisher.publish, args=(event(2), "held:t"))
    first.start()
    wait_for(lambda: publisher.stats()["messages"] == 2, what="the held message to be sent")
    rest = threading.Thread(
        target=in_threads,
        args=(lambda n: publisher.publish(event(n), f"{n:09d}:t"), list(range(10, 19))),
    )
    rest.start()
    wait_for(lambda: publisher.stats()["waiting"] == 9, what="nine requests waiting")
    proxy.release()
    first.join()
    rest.join()
    stats = publisher.stats()
    assert (stats["batches"], stats["messages"], stats["largest_batch"]) == (3, 11, 9)
    assert len(queued_task_ids(f"{broker_namespace}.orders")) == 11


def test_a_nack_fails_only_the_requests_whose_message_was_nacked(
    rabbitmq_url, broker_namespace, publishers
):
    publisher = publishers(topology=SmallQueue)
    outcomes = in_threads(lambda n: publisher.publish(event(n), f"{n:09d}:t"), list(range(1, 9)))
    confirmed = sorted(f"{n:09d}:t" for n, outcome in outcomes.items() if outcome is None)
    refused = [outcome for outcome in outcomes.values() if outcome is not None]
    assert len(confirmed) == 2
    assert len(refused) == 6
    assert all("nacked by the broker" in str(exc) for exc in refused)
    assert sorted(queued_task_ids(f"{broker_namespace}.orders")) == confirmed


def test_a_message_no_queue_takes_is_a_failure_not_dropped(
    rabbitmq_url, broker_namespace, publishers
):
    publisher = publishers(topology=Unbound)
    with pytest.raises(BrokerUnavailable, match="returned by the broker: NO_ROUTE"):
        publisher.publish_all([(event(1), "a:t"), (event(2), "b:t")])
    assert publisher.stats()["reconnects"] == 0  # an answer, not a failure of the link


def test_a_topology_the_broker_refuses_is_broker_unavailable(rabbitmq_url, broker_namespace):
    """Classic queues where magsync declares quorum ones: PRECONDITION_FAILED on declaring."""
    with amqp.Connection("127.0.0.1:5672") as conn:
        conn.channel().queue_declare(f"{broker_namespace}.orders", durable=True, auto_delete=False)
    settings = Settings.from_env(
        {"CELERY_BROKER_URL": rabbitmq_url, "MAGSYNC_BROKER_NAMESPACE": broker_namespace}
    )
    celery = create_celery(settings)
    publisher = GroupCommitPublisher(celery, celery.magsync_topology, 5)
    try:
        with pytest.raises(BrokerUnavailable, match="PreconditionFailed"):
            publisher.publish(event(1), "a:t")
    finally:
        publisher.close()


def close_connection(name):
    """Close, as RabbitMQ's operator would, the one connection whose client named it ``name``."""
    ctl = services.require_rabbitmqctl()
    listed = subprocess.run(
        [ctl, "-q", "list_connections", "pid", "client_properties"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    [pid] = [line.split("\t")[0] for line in listed.splitlines() if f'"{name}"' in line]
    subprocess.run(
        [ctl, "close_connection", pid, "closed by a test"],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_a_connection_lost_mid_flight_fails_its_requests_and_the_next_publish_reconnects(
    proxy, publishers, rabbitmq_url, broker_namespace
):
    services.require_rabbitmqctl()
    publisher = publishers(url=proxy.url())
    publisher.publish(event(1), "before:t")
    proxy.hold("to_upstream")  # the next messages stay in the proxy: in flight
    failed = {}

    def publish_three():
        try:
            publisher.publish_all([(event(n), f"{n:09d}:lost") for n in (2, 3, 4)])
        except BrokerUnavailable as exc:
            failed["exc"] = exc

    waiting = threading.Thread(target=publish_three)
    waiting.start()
    wait_for(
        lambda: publisher.stats()["messages"] == 4 and proxy.held_bytes["to_upstream"],
        what="three messages in flight",
    )
    close_connection(publisher.connection_name)
    waiting.join()
    assert "ConnectionForced" in str(failed["exc"])  # the broker's close, not a timeout
    assert "3 of 3 not confirmed" in str(failed["exc"])

    publisher.publish(event(5), "after:t")  # a new connection (the held one is gone)
    assert publisher.stats()["reconnects"] == 1
    ids = queued_task_ids(f"{broker_namespace}.orders")
    assert ids == ["before:t", "after:t"]


def test_a_connection_lost_between_two_publishes_is_replaced_without_a_failure(
    proxy, publishers, rabbitmq_url, broker_namespace
):
    publisher = publishers(url=proxy.url())
    publisher.publish(event(1), "before:t")
    proxy.set_mode("down")  # the connection is cut while idle (a broker restart, say)
    proxy.set_mode("up")
    publisher.publish(event(2), "after:t")  # reopened before publishing: no failure
    assert publisher.stats()["reconnects"] == 0
    assert queued_task_ids(f"{broker_namespace}.orders") == ["before:t", "after:t"]


def test_no_confirm_in_time_is_a_failure_even_for_a_queued_message(
    proxy, publishers, rabbitmq_url, broker_namespace
):
    publisher = publishers(url=proxy.url(), timeout=1)
    publisher.publish(event(1), "before:t")
    proxy.hold("to_client")  # the broker takes the messages; its confirms never arrive
    with pytest.raises(BrokerUnavailable, match="2 of 2 not confirmed"):
        publisher.publish_all([(event(2), "unconfirmed:t"), (event(3), "unconfirmed:u")])
    # In the queue, yet refused: a request is only ever accepted for a confirmed message.
    queue = f"{broker_namespace}.orders"
    wait_for(lambda: queue_depth(rabbitmq_url, queue) == 3, what="the unconfirmed messages")
    assert queued_task_ids(queue) == ["before:t", "unconfirmed:t", "unconfirmed:u"]
    proxy.release()
    publisher.publish(event(4), "after:t")
    assert publisher.stats()["reconnects"] == 1
    assert queued_task_ids(queue) == ["after:t"]


def test_a_forked_child_publishes_on_a_connection_of_its_own(
    rabbitmq_url, broker_namespace, publishers
):
    publisher = publishers()
    publisher.publish(event(1), "parent:before")
    parent_name = publisher.connection_name
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread and socket are not there to use
        try:
            publisher.publish(event(2), "child:t")
            code = 0 if publisher.connection_name != parent_name else 3
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    publisher.publish(event(3), "parent:after")  # the parent's connection still works
    assert publisher.stats()["reconnects"] == 0
    ids = queued_task_ids(f"{broker_namespace}.orders")
    assert sorted(ids) == ["child:t", "parent:after", "parent:before"]


# -- through the web view ---------------------------------------------------------------------


def test_the_webhook_answers_202_for_a_confirmed_message_and_503_for_a_nacked_one(
    make_settings, rabbitmq_url, broker_namespace, publishers
):
    settings = make_settings(
        MAGENTO_WEBHOOK_SECRET="whsec-group-0123456789",
        CELERY_BROKER_URL=rabbitmq_url,
        MAGSYNC_BROKER_NAMESPACE=broker_namespace,
    )
    client = create_app(settings, publisher=publishers(topology=SmallQueue)).test_client()

    def post(n):
        body = json_body(n)
        return client.post(
            "/magento/webhook",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Magento-Signature": sign(body, "whsec-group-0123456789"),
            },
        )

    assert [post(n).status_code for n in (1, 2)] == [202, 202]
    refused = post(3)
    assert refused.status_code == 503
    assert refused.json["error"] == "broker_unavailable"
    assert int(refused.headers["Retry-After"]) > 0
    assert len(queued_task_ids(f"{broker_namespace}.orders")) == 2


def json_body(n):
    return json.dumps({"event": "sales_order_save_after", "order": event(n)["order"]}).encode()


# -- with real processes --------------------------------------------------------------------------


def publishing_connections(namespace):
    """The pids in the names of this namespace's publishing connections on the broker."""
    ctl = services.require_rabbitmqctl()
    listed = subprocess.run(
        [ctl, "-q", "list_connections", "client_properties"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    prefix = f"magsync web publisher {namespace} pid "
    return sorted(
        int(line.split(prefix, 1)[1].split('"', 1)[0])
        for line in listed.splitlines()
        if prefix in line
    )


@pytest.mark.slow
def test_a_worker_syncs_every_order_the_web_process_confirmed(
    org_factory, rabbitmq_url, broker_namespace, tmp_path
):
    from tests import processes

    services.require_rabbitmqctl()
    org = org_factory()
    env = {
        **org.settings(),
        "CELERY_BROKER_URL": rabbitmq_url,
        "MAGSYNC_BROKER_NAMESPACE": broker_namespace,
        "MAGENTO_WEBHOOK_SECRET": "whsec-group-0123456789",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "LOG_LEVEL": "INFO",
    }
    web, url = processes.start_web(env, tmp_path, threads=8, workers=2)
    worker = None
    try:
        import requests

        statuses = {}

        def post(n):
            body = json_body(n)
            statuses[n] = requests.post(
                url + "/magento/webhook",
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Magento-Signature": sign(body, "whsec-group-0123456789"),
                },
                timeout=30,
            ).status_code

        numbers = list(range(7001, 7041))
        for first in range(0, len(numbers), 10):
            in_threads(post, numbers[first : first + 10])
        assert statuses == dict.fromkeys(numbers, 202)
        # gunicorn's workers each publish on their own connection (not the master's).
        workers = subprocess.run(
            ["pgrep", "-P", str(web.popen.pid)], capture_output=True, text=True, check=True
        ).stdout.split()
        assert set(publishing_connections(broker_namespace)) <= {int(pid) for pid in workers}
        assert publishing_connections(broker_namespace)

        worker = processes.start_worker(env, tmp_path, name="gc", concurrency=2)
        wanted = {f"{n:09d}" for n in numbers}

        def synced():
            return wanted <= {r.get("Magento_Order_ID__c") for r in org.records("Opportunity")}

        wait_for(synced, timeout=90, what="every confirmed order in the org")
    finally:
        if worker is not None:
            worker.stop()
        web.stop()
