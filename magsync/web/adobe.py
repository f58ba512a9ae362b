"""``/adobe/events``: Adobe I/O Events deliveries for Adobe Commerce, verified as Adobe signs them.

``GET ?challenge=<token>`` answers the registration check: the token as ``text/plain``, or
``{"challenge": token}`` when the request prefers ``application/json``.

``POST`` does, in order, stopping at the first failure and enqueuing nothing:

1. the body fits (413; up to ``MAX_BODY_BYTES``, above Adobe's 2 MB batches, which Adobe never
   retries once refused);
2. an unsigned body may only be the registration's ``{"validationUrl": ...}``: magsync GETs that
   URL itself, in the background, when it is on an ``ADOBE_IO_VALIDATION_HOSTS`` host over HTTPS,
   and answers 200. Anything else unsigned is 401;
3. either RSA signature verifies over the raw bytes (401; 503 when a public key could not be
   fetched, so that Adobe retries);
4. it is JSON (415 for another content type, 400 unparseable): one event, or a batch (a JSON
   array of at most ``MAX_BATCH_EVENTS``);
5. every event is for this I/O project (403), an order event magsync knows, with an event id (422);
6. each event is published as its own task, the event id in its task id, all handed to the
   publisher together, and confirmed: 202 only when all are; otherwise 503 with
   ``Retry-After``. Events confirmed despite the failure are published again on Adobe's retry
   and skipped by the workers as repeats of their event id.
"""

import logging
from dataclasses import dataclass

from flask import Blueprint, current_app, jsonify, make_response, request

from magsync.magento import adobe, envelopes
from magsync.messaging.broker import BrokerUnavailable
from magsync.web.answers import Refusal, read_body

log = logging.getLogger(__name__)

bp = Blueprint("adobe_events", __name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_BATCH_EVENTS = 100
MAX_UNSIGNED_BYTES = 16 * 1024
MAX_CHALLENGE_CHARS = 512
CONTENT_TYPES = frozenset(
    {"application/json", "application/cloudevents+json", "application/cloudevents-batch+json"}
)


@dataclass(frozen=True)
class AdobeIntake:
    """What the view needs: the I/O project's client id, the key store, the validator and the
    publisher (one of each per process)."""

    client_id: str
    keys: adobe.KeyStore
    validator: adobe.Validator
    publisher: object  # GroupCommitPublisher or Publisher: publish_all((event, task_id), ...)
    max_clock_skew: float

    @classmethod
    def build(cls, settings, publisher):
        verify = settings.adobe_ca_bundle or True
        keys = adobe.KeyStore(
            settings.adobe_key_base_url,
            max_age=settings.adobe_key_cache_seconds,
            timeout=settings.adobe_timeout,
            verify=verify,
        )
        validator = adobe.Validator(
            settings.adobe_validation_hosts, timeout=settings.adobe_timeout, verify=verify
        )
        return cls(settings.adobe_client_id, keys, validator, publisher, settings.max_clock_skew)


@bp.get("/adobe/events")
def challenge():
    token = request.args.get("challenge", "")
    if not token or len(token) > MAX_CHALLENGE_CHARS or not token.isprintable():
        return Refusal(400, "invalid_challenge", "Expected ?challenge=<token>.").response()
    preferred = request.accept_mimetypes.best_match(
        ["text/plain", "application/json"], default="text/plain"
    )
    if preferred == "application/json":
        return jsonify({"challenge": token})
    response = make_response(token)
    response.mimetype = "text/plain"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.post("/adobe/events")
def receive():
    intake = current_app.extensions["magsync.adobe"]
    try:
        body = _body()
        if not _signed():
            return _unsigned(intake, body)
        _verify(intake, body)
        documents, single = _documents(body)
        events = [_event(document, intake, single, body) for document in documents]
        task_ids = _publish(intake.publisher, events)
    except Refusal as refusal:
        return refusal.response()
    response = jsonify({"status": "accepted", "task_ids": task_ids})
    response.status_code = 202
    return response


def _body():
    # This route only: Adobe's batches are larger than the seed webhook's limit allows.
    request.max_content_length = MAX_BODY_BYTES
    return read_body(MAX_BODY_BYTES)


def _signed():
    return any(request.headers.get(name) for name in adobe.SIGNATURE_HEADERS)


def _unsigned(intake, body):
    """The registration's ``validationUrl`` POST (Adobe does not sign it); else 401."""
    document = None
    if len(body) <= MAX_UNSIGNED_BYTES:
        try:
            document = envelopes.load_json(body)
        except envelopes.InvalidJson:
            document = None
    url = document.get("validationUrl") if isinstance(document, dict) else None
    if not isinstance(url, str):
        log.warning("adobe delivery refused", extra={"reason": "SignatureMissing"})
        raise Refusal(401, "invalid_signature", "Missing x-adobe-digital-signature headers.")
    started = intake.validator.submit(url)
    return jsonify({"status": "validating" if started else "not_validated"})


def _verify(intake, body):
    try:
        adobe.verify(body, request.headers, intake.keys)
    except adobe.DeliveryRefused as exc:
        log.warning(
            "adobe delivery refused",
            extra={"reason": type(exc).__name__, "remote": request.remote_addr},
        )
        raise Refusal(exc.status, exc.error, str(exc)) from None


def _documents(body):
    """``(events, single)``: the body's events, and whether it was one event (not a batch)."""
    if request.mimetype not in CONTENT_TYPES:
        raise Refusal(
            415,
            "unsupported_media_type",
            "Content-Type must be application/json or application/cloudevents+json.",
        )
    try:
        document = envelopes.load_json(body)
    except envelopes.InvalidJson as exc:
        raise Refusal(400, "invalid_json", str(exc)) from None
    if not isinstance(document, list):
        return [document], True
    if not document or len(document) > MAX_BATCH_EVENTS:
        raise Refusal(
            413 if document else 422,
            "invalid_batch",
            f"A batch holds 1 to {MAX_BATCH_EVENTS} events.",
        )
    return document, False


def _event(document, intake, single, body):
    """The task payload of one event; ``Refusal`` when it is not for this project or not an
    order event with an event id."""
    if not isinstance(document, dict):
        raise Refusal(422, "invalid_envelope", "Each event must be a JSON object.")
    try:
        adobe.check_recipient(document, intake.client_id)
    except adobe.WrongRecipient as exc:
        log.warning("adobe delivery refused", extra={"reason": "WrongRecipient"})
        raise Refusal(exc.status, exc.error, str(exc)) from None
    header = request.headers.get(adobe.EVENT_ID_HEADER) if single else None
    event_id = adobe.event_id_of(document, header)
    try:
        event = envelopes.parse(document, body, max_clock_skew=intake.max_clock_skew)
    except envelopes.EnvelopeError as exc:
        raise Refusal(
            422, "invalid_envelope", "Event envelope is not valid.", errors=exc.errors
        ) from None
    if event["envelope"] != "adobe":
        errors = {"type": ["Only Adobe I/O Events CloudEvents are accepted here."]}
        raise Refusal(422, "invalid_envelope", "Event envelope is not valid.", errors=errors)
    if event_id is None:
        errors = {"eventid": ["Missing event id (eventid, event_id or x-adobe-event-id)."]}
        raise Refusal(422, "invalid_envelope", "Event envelope is not valid.", errors=errors)
    key = adobe.event_key(event_id)
    event["event_id"] = event["adobe_event_id"] = key
    return event


def _publish(publisher, events):
    """Hand every event over at once (one group commit) and return the task ids once all are
    confirmed; ``Refusal`` 503 when any is not."""
    deliveries = [(event, envelopes.task_id(event)) for event in events]
    try:
        task_ids = publisher.publish_all(deliveries)
    except BrokerUnavailable as exc:
        log.error(
            "adobe events not enqueued: broker unavailable",
            extra={"events": len(events), "cause": str(exc)},
        )
        raise Refusal(503, "broker_unavailable", "Try again later.") from None
    for event, task_id in deliveries:
        log.info(
            "adobe event accepted",
            extra={
                "order": event["increment_id"],
                "entity_id": event["entity_id"],
                "updated_at": event["updated_at"],
                "task_id": task_id,
            },
        )
    return task_ids
