"""Health endpoints: ``/healthz`` (the process is up), ``/readyz`` (the broker is reachable)."""

from flask import Blueprint, current_app, jsonify

from magsync.messaging.broker import broker_reachable

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    celery = current_app.extensions["celery"]
    ok = broker_reachable(
        celery.conf.broker_url,
        timeout=2.0,
        transport_options=celery.conf.broker_transport_options,
    )
    response = jsonify({"status": "ready" if ok else "broker_unreachable"})
    response.status_code = 200 if ok else 503
    return response
