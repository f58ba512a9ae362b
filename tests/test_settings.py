import pytest

from magsync.settings import ConfigError, Settings


def test_defaults_need_no_environment():
    settings = Settings.from_env({})
    assert settings.sf_external_id_field == "Magento_Order_ID__c"
    assert settings.sf_stage_map["new"] == "Prospecting"
    assert settings.sf_api_version == "58.0"
    assert settings.magento_rest_enabled is False


def test_every_malformed_value_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {
                "SALESFORCE_LOGIN_URL": "http://login.salesforce.com",
                "SALESFORCE_API_VERSION": "latest",
                "SALESFORCE_STAGE_MAP": "new",
                "SALESFORCE_RATE_LIMIT": "fast",
            }
        )
    message = str(info.value)
    for name in (
        "SALESFORCE_LOGIN_URL",
        "SALESFORCE_API_VERSION",
        "SALESFORCE_STAGE_MAP",
        "SALESFORCE_RATE_LIMIT",
    ):
        assert name in message


def test_require_names_the_missing_variables():
    with pytest.raises(ConfigError, match="MAGENTO_WEBHOOK_SECRET"):
        Settings.from_env({}).require("webhook_secrets")


def test_rotated_webhook_secrets():
    settings = Settings.from_env({"MAGENTO_WEBHOOK_SECRET": "old-one, new-one"})
    assert settings.webhook_secrets == ("old-one", "new-one")


@pytest.mark.parametrize(
    ("login_url", "audience"),
    [
        ("https://login.salesforce.com", "https://login.salesforce.com"),
        ("https://test.salesforce.com", "https://test.salesforce.com"),
        ("https://acme.my.salesforce.com", "https://login.salesforce.com"),
        ("https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"),
    ],
)
def test_jwt_audience_is_the_login_or_test_url(login_url, audience):
    assert Settings.from_env({"SALESFORCE_LOGIN_URL": login_url}).sf_token_audience == audience


def test_describe_masks_secrets():
    settings = Settings.from_env(
        {"MAGENTO_WEBHOOK_SECRET": "hush", "CELERY_BROKER_URL": "amqp://u:pw@h//"}
    )
    shown = dict(settings.describe())
    assert shown["MAGENTO_WEBHOOK_SECRET"] == "(set)"
    assert "pw" not in shown["CELERY_BROKER_URL"]


def test_heroku_broker_variable_is_used_when_celery_broker_url_is_unset():
    settings = Settings.from_env({"CLOUDAMQP_URL": "amqps://u:p@host/vhost"})
    assert settings.broker_url == "amqps://u:p@host/vhost"


def test_api_version_accepts_the_v_prefix():
    assert Settings.from_env({"SALESFORCE_API_VERSION": "v59.0"}).sf_api_version == "59.0"


def test_env_example_documents_every_setting():
    from pathlib import Path

    documented = {
        line.split("=", 1)[0]
        for line in (Path(__file__).parent.parent / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    declared = {env for env, _ in Settings.from_env({}).describe()}
    assert declared - documented == set()


def test_coalescing_is_on_by_default_and_one_order_per_call_is_the_prefork_pool():
    coalescing = Settings.from_env({})
    assert (coalescing.batch_size, coalescing.batch_linger_ms) == (200, 25.0)
    assert (coalescing.worker_pool, coalescing.worker_pool_size) == ("threads", 400)
    single = Settings.from_env({"MAGSYNC_BATCH_SIZE": "1", "MAGSYNC_WORKER_CONCURRENCY": "3"})
    assert (single.coalescing, single.worker_pool, single.worker_pool_size) == (
        False,
        "prefork",
        3,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAGSYNC_BATCH_SIZE", "0"),
        ("MAGSYNC_BATCH_SIZE", "201"),
        ("MAGSYNC_BATCH_LINGER_MS", "-1"),
        ("MAGSYNC_SALESFORCE_CONCURRENCY", "0"),
        ("MAGSYNC_WORKER_THREADS", "none"),
        ("MAGSYNC_BATCH_TIMEOUT", "0"),
    ],
)
def test_batch_settings_out_of_range_are_refused_by_name(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
