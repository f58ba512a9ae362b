"""``POST /magento/webhook``: verify, check the envelope, enqueue durably, answer fast.

The view does four things in order and stops at the first failure, enqueuing nothing:

1. the body fits the limit (413, also for a chunked body without Content-Length), and its
   signature over the raw bytes verifies (401/400);
2. it is JSON (415 for another content type, 400 for unparseable or absurdly nested JSON) and
   a known event about an identifiable order with sane ids, amounts and version (422 with the
   field errors);
3. the task is published and confirmed by the broker; otherwise 503 with ``Retry-After``, so
   the sender retries later;
4. 202.
"""

import logging

from flask import Blueprint, current_app, jsonify, request

from magsync.magento import envelopes, signature
from magsync.messaging.broker import BrokerUnavailable
from magsync.web.answers import Refusal, read_body

log = logging.getLogger(__name__)

bp = Blueprint("magento_webhook", __name__)


@bp.post("/magento/webhook")
def receive():
    receiver = current_app.extensions["magsync.receiver"]
    try:
        body = verified_body(receiver)
        event = checked_event(receiver, body)
        task_id = enqueue(receiver, event)
    except Refusal as refusal:
        return refusal.response()
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


def verified_body(receiver):
    """Step 1: the raw body, its signature verified with one of the receiver's secrets."""
    body = read_body(receiver.max_body_bytes)
    try:
        signature.verify(body, request.headers.get(signature.HEADER), receiver.secrets)
    except signature.SignatureError as exc:
        log.warning(
            "webhook signature rejected",
            extra={"reason": type(exc).__name__, "remote": request.remote_addr},
        )
        raise Refusal(exc.status, "invalid_signature", str(exc)) from None
    return body


def checked_event(receiver, body):
    """Step 2: the event to enqueue, from a JSON body in a known envelope."""
    if request.mimetype != "application/json":
        raise Refusal(415, "unsupported_media_type", "Content-Type must be application/json.")
    try:
        document = envelopes.load_json(body)
    except envelopes.InvalidJson as exc:
        raise Refusal(400, "invalid_json", str(exc)) from None
    try:
        return envelopes.parse(document, body, max_clock_skew=receiver.max_clock_skew)
    except envelopes.EnvelopeError as exc:
        raise Refusal(
            422, "invalid_envelope", "Webhook envelope is not valid.", errors=exc.errors
        ) from None


def enqueue(receiver, event):
    """Step 3: publish the event and wait for the broker's confirm; returns the task id."""
    task_id = envelopes.task_id(event)
    try:
        receiver.publisher.publish(event, task_id)
    except BrokerUnavailable as exc:
        log.error(
            "webhook not enqueued: broker unavailable",
            extra={"order": event["increment_id"], "cause": str(exc)},
        )
        raise Refusal(503, "broker_unavailable", "Try again later.") from None
    return task_id
