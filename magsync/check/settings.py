"""The settings check: every variable well-formed, and what each process needs is present.

Findings name variables and say what is set, never a secret's value (the broker URL is shown
with its password masked).
"""

import os

from magsync.alerts import mask
from magsync.check.report import Finding
from magsync.salesforce.auth import JwtBearerGrant, grant_for
from magsync.settings import (
    MAGENTO_REST,
    MIN_FLOWER_PASSWORD_CHARS,
    MIN_WEBHOOK_SECRET_BYTES,
    ConfigError,
    Settings,
    flower_auth_problem,
    mask_url,
    webhook_secret_problem,
)


def parse(environ):
    """``(settings, findings)``: settings is None when a variable is malformed."""
    try:
        return Settings.from_env(environ), []
    except ConfigError as exc:
        text = str(exc).removeprefix("invalid settings: ")
        return None, [
            Finding.fail(
                problem.split(" ", 1)[0],
                # Parsers name the problem, not the value; mask anyway, in case one ever does.
                mask(problem.split(" ", 1)[-1]),
                "correct the value (.env.example shows each variable's form)",
            )
            for problem in text.split("; ")
        ]


def _salesforce(settings):
    try:
        grant = grant_for(settings)
        if isinstance(grant, JwtBearerGrant):
            grant.form()  # signs an assertion: proves the key is a usable RSA key
    except ConfigError as exc:
        yield Finding.fail(
            "Salesforce credentials",
            str(exc),
            "set the JWT bearer flow's SALESFORCE_CLIENT_ID, SALESFORCE_USERNAME and "
            "SALESFORCE_PRIVATE_KEY_PATH (or SALESFORCE_PRIVATE_KEY), or the web-server flow's "
            "SALESFORCE_REFRESH_TOKEN with SALESFORCE_CLIENT_ID and SALESFORCE_CLIENT_SECRET",
        )
        return
    if isinstance(grant, JwtBearerGrant):
        source = (
            "SALESFORCE_PRIVATE_KEY"
            if settings.sf_private_key
            else f"SALESFORCE_PRIVATE_KEY_PATH ({settings.sf_private_key_path})"
        )
        detail = (
            f"JWT bearer flow as {settings.sf_username} at {settings.sf_login_url} (audience "
            f"{settings.sf_token_audience}), signed with the private key in {source}"
        )
    else:
        detail = (
            f"refresh-token flow at {settings.sf_login_url}; client id, client secret and "
            "refresh token set"
        )
    yield Finding.ok("Salesforce credentials", detail)


def _ca_bundle(settings):
    if settings.sf_ca_bundle and not os.access(settings.sf_ca_bundle, os.R_OK):
        yield Finding.fail(
            "SALESFORCE_CA_BUNDLE",
            f"names a file that cannot be read ({settings.sf_ca_bundle})",
            "point it at a readable PEM bundle, or unset it to use the system's CAs",
        )


def _webhook_secret(settings):
    name = "MAGENTO_WEBHOOK_SECRETS_JSON" if settings.webhook_secrets_json else None
    name = name or "MAGENTO_WEBHOOK_SECRET"
    secrets = settings.webhook_secrets_json or settings.webhook_secrets or ()
    problem = webhook_secret_problem(secrets)
    if not secrets and (settings.adobe_client_id or settings.reconcile_enabled):
        yield Finding.ok(name, "not set: the seed webhook intake is off (404)")
    elif not secrets:
        yield Finding.fail(
            name,
            "is not set, nor is ADOBE_IO_CLIENT_ID: the web process refuses to start without a "
            "webhook intake",
            "set it to the secret a Magento webhook module signs with, or set ADOBE_IO_CLIENT_ID "
            "for Adobe I/O Events (Adobe Commerce), or configure polling (MAGENTO_* REST and "
            "MAGSYNC_RECONCILE_INTERVAL)",
        )
    elif problem:
        yield Finding.fail(
            name,
            f"{problem}: the web process refuses to start with it",
            f"use at least {MIN_WEBHOOK_SECRET_BYTES} random bytes (e.g. `python -c 'import "
            "secrets; print(secrets.token_hex(32))'`), set it in Magento and here",
        )
    elif len(secrets) > 1:
        yield Finding.ok(name, f"{len(secrets)} secrets set (a rotation in progress)")
    else:
        yield Finding.ok(name, "set")


def _adobe_intake(settings):
    if not settings.adobe_client_id:
        if (
            not (settings.webhook_secrets or settings.webhook_secrets_json)
            and settings.reconcile_enabled
        ):
            yield Finding.warn(
                "webhook intake",
                "none is on: the web process serves only its health endpoints, and orders "
                f"arrive by polling the store every {settings.reconcile_interval:g} s",
                "set ADOBE_IO_CLIENT_ID (Adobe Commerce) or MAGENTO_WEBHOOK_SECRET for changes "
                "within seconds",
            )
        return
    yield Finding.ok(
        "ADOBE_IO_CLIENT_ID",
        "set: the Adobe I/O Events intake is on (/adobe/events); public keys cached "
        f"{settings.adobe_key_cache_seconds} s",
    )
    if settings.adobe_key_base_url.startswith("http://"):
        yield Finding.warn(
            "ADOBE_IO_PUBLIC_KEY_BASE_URL",
            f"{settings.adobe_key_base_url} is plain HTTP to a loopback address: for the sandbox "
            "store only",
            "unset it to fetch Adobe's keys from https://static.adobeioevents.com",
        )
    else:
        yield Finding.ok("ADOBE_IO_PUBLIC_KEY_BASE_URL", f"HTTPS: {settings.adobe_key_base_url}")


def _magento_rest(settings):
    missing = settings.unset(*MAGENTO_REST)
    if len(missing) == len(MAGENTO_REST):
        yield Finding.warn(
            "MAGENTO_*",
            "the store's REST API is not configured: workers map the webhook's payload instead "
            "of reading each order from the store",
            "create an integration (System > Integrations, Sales > Orders) and set "
            "MAGENTO_BASE_URL and its four OAuth values",
        )
    elif missing:
        yield Finding.fail(
            "MAGENTO_*",
            f"only part of the store's REST API is configured: {', '.join(missing)} not set",
            "set all five MAGENTO_ REST variables, or none",
        )
    else:
        yield Finding.ok(
            "MAGENTO_*", f"REST API at {settings.magento_base_url}, four OAuth values set"
        )


def _reconciliation(settings):
    subject = "MAGSYNC_RECONCILE_INTERVAL"
    if not settings.magento_rest_enabled:
        yield Finding.warn(
            "reconciliation",
            "is off: without the store's REST API (MAGENTO_*) an order whose webhook never "
            "arrives never reaches Salesforce",
            "set MAGENTO_BASE_URL and its four OAuth values, and run one clock process",
        )
    elif settings.reconcile_interval <= 0:
        yield Finding.warn(
            subject,
            "is 0: reconciliation is off, an order whose webhook never arrives never reaches "
            "Salesforce",
            "set it to 300 (seconds) and run one clock process",
        )
    else:
        yield Finding.ok(
            subject,
            f"the clock process polls the store every {settings.reconcile_interval:g} s "
            f"(reading {settings.reconcile_overlap:g} s back); run exactly one clock",
        )


def _broker(settings):
    if settings.broker_is_rabbitmq:
        yield Finding.ok("CELERY_BROKER_URL", f"RabbitMQ at {mask_url(settings.broker_url)}")
    else:
        yield Finding.warn(
            "CELERY_BROKER_URL",
            f"{settings.broker_url.split(':', 1)[0]}:// has no publisher confirms and no dead "
            "letters: for trying magsync only",
            "point it at RabbitMQ",
        )


def _sentry(settings):
    if not settings.sentry_dsn:
        yield Finding.warn(
            "SENTRY_DSN",
            "is not set: dead letters and authentication failures reach only the logs",
            "set it to your Sentry project's DSN",
        )


def _flower(settings):
    auth = settings.flower_basic_auth
    problem = flower_auth_problem(auth)
    if not auth:
        yield Finding.warn(
            "FLOWER_BASIC_AUTH",
            "is not set: magsync flower refuses to start",
            "set it to user:password if you run Flower",
        )
    elif problem:
        yield Finding.fail(
            "FLOWER_BASIC_AUTH",
            f"{problem}: magsync flower refuses to start with it",
            f"set it to user:password with a named user and a password of at least "
            f"{MIN_FLOWER_PASSWORD_CHARS} random characters",
        )


# Each rule looks at parsed settings and yields findings.
RULES = (
    _salesforce,
    _ca_bundle,
    _webhook_secret,
    _adobe_intake,
    _magento_rest,
    _reconciliation,
    _broker,
    _sentry,
    _flower,
)


def findings(settings):
    return [finding for rule in RULES for finding in rule(settings)]
