"""Sentry: on when ``SENTRY_DSN`` is set, with the Flask and Celery integrations.

Events carry no user data, cookies, headers, request or message bodies, and no stack-frame
variables (a frame of the token request holds the signed assertion). Every event, all of it
(message, exception values, contexts, breadcrumbs, extra, tags), and every breadcrumb as it is
recorded (an HTTP breadcrumb's URL holds a SOQL query with the buyer's email) passes through
``magsync.redact``: secrets and buyer data never leave the process.
"""

import logging

from magsync.redact import redact, redact_data

log = logging.getLogger(__name__)

# What checks and alerts print of free text: the one redaction function.
mask = redact


def scrub(event, hint=None):
    """Sentry ``before_send``: drop request bodies, headers and cookies; redact the rest."""
    request = event.get("request") or {}
    request.pop("data", None)
    request.pop("headers", None)
    request.pop("cookies", None)
    return redact_data(event)


def scrub_breadcrumb(crumb, hint=None):
    """Sentry ``before_breadcrumb``: redact the breadcrumb (its message, URL, query, data)."""
    return redact_data(crumb)


def init(settings):
    """Start Sentry when configured; returns whether it is on."""
    if not settings.sentry_dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.flask import FlaskIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.sentry_environment,
        integrations=[
            FlaskIntegration(),
            CeleryIntegration(),
            # Log records become breadcrumbs, never events: magsync sends its alerts itself
            # (one per dead letter, one per authentication failure episode), so an error logged
            # for every order or every 503 must not page anyone again.
            LoggingIntegration(level=logging.INFO, event_level=None),
        ],
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "off"}},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "stack_frame_variables": False,
            "database_query_data": False,
            "queues": False,
        },
        max_request_body_size="never",
        before_send=scrub,
        before_breadcrumb=scrub_breadcrumb,
    )
    log.info("sentry enabled", extra={"environment": settings.sentry_environment})
    return True


def _alert(message, tags, context_name, context, fingerprint=None):
    """Send one event (no-op without Sentry): ``message`` masked, with tags and a context."""
    import sentry_sdk

    if not sentry_sdk.get_client().is_active():
        return
    with sentry_sdk.new_scope() as scope:
        for key, value in tags.items():
            scope.set_tag(key, value)
        scope.set_context(context_name, context)
        if fingerprint:
            scope.fingerprint = fingerprint
        sentry_sdk.capture_message(mask(message), level="error")


def capture_dead_letter(error, order):
    """One Sentry event per dead letter, tagged with the order number."""
    _alert(
        f"order {order} dead-lettered: {error.reason}",
        {"order": order, "reason": error.reason},
        "dead_letter",
        error.describe(),
    )


def capture_auth_failure(error, grant, pid):
    """One Sentry event for the start of a Salesforce authentication failure episode.

    The caller (``TokenProvider``) reports each episode once per process, not once per order;
    the event is grouped by reason.
    """
    _alert(
        f"Salesforce authentication failing: {error.reason}",
        {"alert": "salesforce_auth", "reason": error.reason, "grant": grant},
        "salesforce_auth",
        {**error.describe(), "grant": grant, "pid": pid},
        fingerprint=["salesforce-auth", str(error.reason)],
    )


def capture_api_usage_halt(used, limit, halt):
    """One Sentry event for the start of an episode of API usage past the halt threshold.

    The caller (``magsync.sync.pacing``) reports each episode once for all workers, through the
    ledger; the event is grouped as one issue.
    """
    _alert(
        f"Salesforce API usage at {used} of {limit} calls: live orders wait until it falls "
        f"under {halt:.0%}",
        {"alert": "salesforce_api_usage"},
        "salesforce_api_usage",
        {"used": used, "limit": limit, "halt": halt},
        fingerprint=["salesforce-api-usage"],
    )


def capture_missed_webhooks(count, store):
    """One Sentry event for orders reconciliation found whose webhook never came.

    The caller (``magsync.sync.reconcile``) sends at most one an hour per process while it goes
    on; the events are grouped as one issue per store.
    """
    _alert(
        f"reconciliation found {count} orders whose webhook never came: check the store's "
        "webhook module or Adobe I/O Events registration",
        {"alert": "missed_webhooks"},
        "missed_webhooks",
        {"count": count, "store": store},
        fingerprint=["missed-webhooks", store],
    )
