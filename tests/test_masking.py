"""One helper masks the password of a URL wherever magsync shows one (check, CLI, demo, Sentry)."""

import pytest

from magsync.settings import mask_url


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("amqp://guest:hunter2@rabbit:5672//", "amqp://guest:***@rabbit:5672//"),
        (
            "postgresql+psycopg://magsync:hunter2@127.0.0.1:5432/ledger",
            "postgresql+psycopg://magsync:***@127.0.0.1:5432/ledger",
        ),
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        # A password with an unescaped "@" or "/" is masked whole, not in part.
        ("amqp://guest:hun@ter/2@rabbit//", "amqp://guest:***@rabbit//"),
        (
            "broker amqp://guest:hunter2@rabbit// refused; buyer jane@example.com",
            "broker amqp://guest:***@rabbit// refused; buyer jane@example.com",
        ),
        ("amqp://rabbit:5672//", "amqp://rabbit:5672//"),
        ("sqlite:///var/magsync.db", "sqlite:///var/magsync.db"),
        ("https://login.salesforce.com:443/services/oauth2/token", None),
        ("order 000000123 dead-lettered", None),
    ],
)
def test_mask_url_hides_only_the_password(text, shown):
    assert mask_url(text) == (text if shown is None else shown)


def test_mask_url_takes_the_mask_and_passes_other_values_through():
    assert mask_url("amqp://guest:hunter2@rabbit//", mask="[Filtered]") == (
        "amqp://guest:[Filtered]@rabbit//"
    )
    assert mask_url(None) is None
