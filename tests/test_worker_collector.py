"""A worker tunes Python's garbage collector when it starts (``MAGSYNC_GC_THRESHOLD``)."""

import gc

import pytest
from celery import signals

from magsync.settings import ConfigError, Settings
from magsync.worker import collector
from magsync.worker.app import create_worker_app


class WorkController:
    """What Celery's ``worker_init`` signal is sent by, as far as magsync reads it."""

    def __init__(self, app):
        self.app = app


@pytest.fixture(autouse=True)
def collector_restored():
    """Each test leaves the test process's collector as it found it."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tune_freezes_what_is_alive_and_raises_the_young_threshold_only():
    _, older, oldest = gc.get_threshold()
    alive = {"kept": []}
    assert any(o is alive for o in gc.get_objects())

    frozen = collector.tune(50000)

    assert gc.get_threshold() == (50000, older, oldest)
    # Frozen objects that die leave the count (other threads' garbage): it only falls after.
    assert frozen > 0 and 0 < gc.get_freeze_count() <= frozen
    # A frozen object is in no generation the collector scans.
    assert not any(o is alive for o in gc.get_objects())


def test_tune_with_zero_leaves_the_collector_as_python_set_it():
    before = gc.get_threshold()

    assert collector.tune(0) is None

    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize(("value", "expected"), [(None, 50000), ("20000", 20000), ("0", 0)])
def test_the_worker_app_tunes_the_collector_when_celery_starts_the_worker(value, expected):
    before = gc.get_threshold()
    env = {"MAGSYNC_GC_THRESHOLD": value} if value is not None else {}
    celery = create_worker_app(Settings.from_env(env))

    # What Celery's WorkController sends before it builds the pool.
    signals.worker_init.send(sender=WorkController(celery))

    assert gc.get_threshold()[0] == (expected or before[0])
    assert (gc.get_freeze_count() > 0) == bool(expected)


def test_another_celery_app_in_the_process_leaves_the_collector_alone():
    create_worker_app(Settings.from_env({}))  # connects the handler
    before = gc.get_threshold()

    signals.worker_init.send(sender=WorkController(object()))

    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_negative_threshold_is_refused_by_name():
    with pytest.raises(ConfigError, match="MAGSYNC_GC_THRESHOLD"):
        Settings.from_env({"MAGSYNC_GC_THRESHOLD": "-1"})
