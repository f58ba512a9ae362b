"""The declared dependency ranges: bounded on both sides, their lower bounds tested by CI
(``.ci/constraints-lowest.txt``), and the APIs magsync relies on present in what is installed."""

import configparser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def declared():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    lines += config["options.extras_require"]["test"].splitlines()
    return [Requirement(line) for line in lines if line.strip()]


def pinned():
    pins = {}
    for line in (ROOT / ".ci" / "constraints-lowest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            [spec] = requirement.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


@pytest.mark.parametrize("requirement", declared(), ids=str)
def test_every_dependency_has_both_bounds_and_ci_tests_the_lower_one(requirement):
    operators = {spec.operator: spec.version for spec in requirement.specifier}
    assert ">=" in operators and "<" in operators, f"{requirement} must be bounded both ways"
    pins = pinned()
    name = canonicalize_name(requirement.name)
    assert name in pins, f"{name} missing from .ci/constraints-lowest.txt"
    from packaging.version import Version

    assert Version(pins[name]) == Version(operators[">="]), requirement


def test_the_lowest_run_is_part_of_ci():
    run = (ROOT / ".ci" / "run").read_text()
    assert "constraints-lowest.txt" in run


def test_celery_knows_the_task_options_magsync_relies_on():
    # Celery ignores task options it does not know: before 5.7 a hard time limit would ack (and
    # lose) an order whose task set acks_on_timeout=False.
    from celery.app.task import Task

    assert {"acks_on_failure", "acks_on_timeout"} <= set(vars(Task))


def test_sentry_takes_the_data_collection_option(make_settings):
    import sentry_sdk

    from magsync import alerts

    try:
        assert alerts.init(make_settings(SENTRY_DSN="http://public@127.0.0.1:9/1"))
        assert sentry_sdk.get_client().options["data_collection"]["user_info"] is False
    finally:
        sentry_sdk.get_client().close(timeout=0)
        sentry_sdk.init()
