"""The chaos run at a size CI affords; ``scripts/chaos`` runs it larger and prints the figures."""

import pytest

from tests import services
from tests.chaos import ChaosConfig, ChaosRun

pytestmark = pytest.mark.slow


def test_nothing_accepted_is_lost_or_duplicated_or_stale(tmp_path):
    # The run has a RabbitMQ node of its own; the machine's is never used.
    services.require_rabbitmq_server()
    report = ChaosRun(ChaosConfig(orders=120, duration=30), tmp_path).run()
    summary = "\n".join(report.lines())
    print(summary)
    assert report.kills >= 3, summary
    assert report.rabbitmq_restarts == 1, summary
    assert report.org_stats["faults_fired"] > 0, summary
    assert report.accepted == report.orders, summary
    assert len(report.made_to_fail) == 3 and not report.not_dead, summary
    assert report.ok(), summary
