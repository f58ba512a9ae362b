"""The worker's start-up check: one Salesforce token before Celery starts.

Credentials Salesforce refuses (a wrong key, an unknown or revoked user, a wrong client id) stop
the worker with a plain message naming the cause and the fix, reported to Sentry: a worker that
ran on with them would spend every order's retry window on failures, while a stopped worker
leaves the orders waiting in RabbitMQ, untouched, until it starts with fixed credentials.

A Salesforce outage or a network error does not stop it: the worker starts, and orders are
retried with backoff until Salesforce answers (a stopped worker would fix nothing).
"""

import sentry_sdk

from magsync.errors import AuthenticationFailed
from magsync.salesforce.auth import (
    TokenProvider,
    explain,
    grant_for,
    refused_credentials,
)
from magsync.salesforce.rest import build_session


class CredentialsRefused(Exception):
    """Salesforce refused the worker's credentials; the message says why and what to do."""


def salesforce_token(settings, flush_timeout=5.0):
    """Obtain one token as the worker's processes will.

    Returns None when a token was obtained, a warning (text) when Salesforce could not be asked;
    raises ``CredentialsRefused`` when it said no (after reporting it to Sentry, if configured).
    ``ConfigError`` when the settings are incomplete.
    """
    grant = grant_for(settings)
    session = build_session(settings)
    try:
        TokenProvider(settings, session, grant).current()
        return None
    except AuthenticationFailed as exc:
        error = exc
    finally:
        session.close()
    said = next(iter(error.errors), {}).get("message") or ""
    cause, fix = explain(error)
    detail = f"{cause} (Salesforce said: {error.reason}{': ' + said if said else ''})"
    if not refused_credentials(error):
        return (
            f"could not obtain a Salesforce token: {detail}. Starting anyway: orders are "
            "retried with backoff until Salesforce answers."
        )
    _flush(flush_timeout)
    raise CredentialsRefused(
        f"Salesforce refused the worker's credentials ({grant.name} grant), so the worker did "
        f"not start.\n  cause: {detail}\n  fix:   {fix}\n"
        "Orders wait in RabbitMQ meanwhile; none is lost. `magsync check` checks the whole "
        "configuration."
    )


def _flush(timeout):
    # The token provider queued the report; the process is about to exit.
    if sentry_sdk.get_client().is_active():
        sentry_sdk.flush(timeout=timeout)
