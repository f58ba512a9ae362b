"""The chaos run's private RabbitMQ node: a broker of its own, restartable on its data, removed
at the end, and never the machine's."""

import socket

import pytest
from kombu import Connection, Exchange, Queue

from tests import services
from tests.rabbitmq_node import RabbitMQNode

pytestmark = pytest.mark.slow


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def test_a_private_node_keeps_quorum_messages_across_a_restart_and_leaves_only_logs(tmp_path):
    scripts = services.require_rabbitmq_server()
    node = RabbitMQNode(tmp_path / "rabbitmq", scripts=scripts)
    assert node.node.startswith("magsync-chaos-") and node.node.endswith("@localhost")
    assert 5672 not in (node.port, node.dist_port)
    assert node.env["HOME"] == str(tmp_path / "rabbitmq")  # its own Erlang cookie
    exchange = Exchange("probe", type="topic", durable=True)
    queue = Queue(
        "probe.orders", exchange, routing_key="probe", queue_arguments={"x-queue-type": "quorum"}
    )
    try:
        node.start()
        status = node.ctl("status").stdout
        assert f"127.0.0.1, port: {node.port}" in status
        with Connection(node.url) as conn:
            producer = conn.Producer(serializer="json")
            producer.publish(
                {"n": 1}, exchange=exchange, routing_key="probe", declare=[queue], delivery_mode=2
            )
        node.restart(down_for=0.5)
        with Connection(node.url) as conn:
            message = queue.bind(conn.default_channel).get(no_ack=True)
            assert message is not None and message.payload == {"n": 1}
    finally:
        node.close()
    assert node.popen is None
    assert not _accepts(node.port)
    assert [p.name for p in (tmp_path / "rabbitmq").iterdir()] == ["log"]
    assert any((tmp_path / "rabbitmq" / "log").iterdir())


def test_without_rabbitmq_server_the_node_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="rabbitmq-server is not installed"):
        RabbitMQNode(tmp_path / "rabbitmq")
