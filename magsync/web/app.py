"""The web process's factory: the Flask app, its publisher, the webhook views and health.

Nothing reads the environment or builds an app at import time.
"""

import logging
from dataclasses import dataclass, field

from flask import Flask, jsonify

from magsync import alerts, logs
from magsync.messaging.app import create_celery
from magsync.messaging.broker import Publisher
from magsync.messaging.group_commit import GroupCommitPublisher
from magsync.settings import ConfigError, Settings
from magsync.web import adobe, webhook
from magsync.web import health as ops

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Receiver:
    """What the webhook view needs: accepted secrets, limits and the publisher.

    The secrets never show in its ``repr``.
    """

    secrets: tuple = field(repr=False)
    max_body_bytes: int
    publisher: GroupCommitPublisher | Publisher
    max_clock_skew: float = 86400.0


def create_app(settings=None, *, publisher=None):
    """Build the web process's Flask app (its publishing Celery app in ``extensions["celery"]``).

    Each intake is on when its setting is: ``MAGENTO_WEBHOOK_SECRET`` (or
    ``MAGENTO_WEBHOOK_SECRETS_JSON``; every secret at least 16 bytes, or the process refuses to
    start) serves ``POST /magento/webhook`` (the seed's HMAC), ``ADOBE_IO_CLIENT_ID`` serves
    ``/adobe/events`` (Adobe I/O Events); a route whose intake is off answers 404. With neither,
    the process refuses to start rather than accept unsigned orders, unless the store is polled
    (reconciliation configured): then it serves only the health endpoints. ``publisher``
    replaces the broker publisher (tests of paths that never publish pass a fake one, so they
    need no RabbitMQ).
    """
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level)
    alerts.init(settings)

    app = Flask("magsync")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    celery = create_celery(settings)
    app.extensions["magsync.settings"] = settings
    app.extensions["celery"] = celery

    secrets = settings.receiver_secrets()
    if _intakes_on(settings, secrets):
        if publisher is None:
            publisher = _publisher(settings, celery)
            # The dead-letter exchange must exist before anything can be dead-lettered.
            publisher.declare_now()
        app.extensions["magsync.receiver"] = Receiver(
            secrets, settings.max_body_bytes, publisher, settings.max_clock_skew
        )
        _register_intakes(app, settings, secrets, publisher)
    if not settings.broker_is_rabbitmq:
        log.warning(
            "broker is not RabbitMQ: no publisher confirms or dead letters, for trying only",
            extra={"transport": settings.broker_url.split(":", 1)[0]},
        )
    app.register_blueprint(ops.bp)
    app.register_error_handler(413, _too_large)
    app.register_error_handler(404, _json_error)
    app.register_error_handler(405, _json_error)
    return app


def _publisher(settings, celery):
    """One publisher for the process: group commit on RabbitMQ (its thread starts with the first
    webhook, in the gunicorn worker that serves it), one message at a time on other brokers."""
    publisher_class = GroupCommitPublisher if settings.broker_is_rabbitmq else Publisher
    return publisher_class(celery, celery.magsync_topology, settings.publish_timeout)


def _intakes_on(settings, secrets):
    """True when a webhook intake is configured; ``ConfigError`` when none is and the store is
    not polled either (orders would reach magsync no way at all)."""
    if secrets or settings.adobe_client_id:
        return True
    if not settings.reconcile_enabled:
        raise ConfigError(
            "no way in for orders: set MAGENTO_WEBHOOK_SECRET (webhooks signed by a Magento "
            "module), ADOBE_IO_CLIENT_ID (Adobe I/O Events), or both; or, for a store polled "
            "only, the MAGENTO_* REST settings with MAGSYNC_RECONCILE_INTERVAL > 0"
        )
    log.warning(
        "no webhook intake is on: serving health endpoints only; orders come from polling",
        extra={"reconcile_interval": settings.reconcile_interval},
    )
    return False


def _register_intakes(app, settings, secrets, publisher):
    if secrets:
        app.register_blueprint(webhook.bp)
    if settings.adobe_client_id:
        app.extensions["magsync.adobe"] = adobe.AdobeIntake.build(settings, publisher)
        app.register_blueprint(adobe.bp)


def _too_large(error):
    return jsonify({"error": "payload_too_large", "message": "Body too large."}), 413


def _json_error(error):
    return jsonify({"error": error.name.lower().replace(" ", "_"), "message": error.description}), (
        error.code
    )
