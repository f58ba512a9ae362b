"""``POST /magento/webhook``: verify, check the envelope, enqueue durably, answer fast.

The view does four things in order and stops at the first failure, enqueuing nothing:

1. the body fits the limit (413), and its signature over the raw bytes verifies (401/400);
2. it is JSON (415 for another content type, 400 for unparseable JSON);
3. it is a known event about an identifiable order (422 with the field errors);
4. the task is published and confirmed by the broker: 202; otherwise 503 with ``Retry-After``,
   so the sender retries later.
"""

import json
import logging

from flask import Blueprint, current_app, jsonify, request

from magsync.magento import envelopes, signature
from magsync.messaging.broker import BrokerUnavailable

log = logging.getLogger(__name__)

bp = Blueprint("magento_webhook", __name__)

RETRY_AFTER_SECONDS = 10


def _error(status, error, message, **extra):
    response = jsonify({"error": error, "message": message, **extra})
    response.status_code = status
    return response


@bp.post("/magento/webhook")
def receive():
    receiver = current_app.extensions["magsync.receiver"]
    limit = receiver.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return _error(413, "payload_too_large", f"Body exceeds {limit} bytes.")
    body = request.get_data(cache=False)
    if len(body) > limit:
        return _error(413, "payload_too_large", f"Body exceeds {limit} bytes.")

    try:
        signature.verify(body, request.headers.get(signature.HEADER), receiver.secrets)
    except signature.SignatureError as exc:
        log.warning(
            "webhook signature rejected",
            extra={"reason": type(exc).__name__, "remote": request.remote_addr},
        )
        return _error(exc.status, "invalid_signature", str(exc))

    if request.mimetype != "application/json":
        return _error(415, "unsupported_media_type", "Content-Type must be application/json.")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _error(400, "invalid_json", "Body is not valid JSON.")

    try:
        event = envelopes.parse(document, body)
    except envelopes.EnvelopeError as exc:
        return _error(422, "invalid_envelope", "Webhook envelope is not valid.", errors=exc.errors)

    task_id = f"{event['increment_id']}:{event['event_id']}"
    try:
        receiver.publisher.publish(event, task_id)
    except BrokerUnavailable as exc:
        log.error(
            "webhook not enqueued: broker unavailable",
            extra={"order": event["increment_id"], "cause": str(exc)},
        )
        response = _error(503, "broker_unavailable", "Try again later.")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    log.info(
        "webhook accepted",
        extra={
            "order": event["increment_id"],
            "entity_id": event["entity_id"],
            "updated_at": event["updated_at"],
            "task_id": task_id,
        },
    )
    response = jsonify({"status": "accepted", "order": event["increment_id"], "task_id": task_id})
    response.status_code = 202
    return response
