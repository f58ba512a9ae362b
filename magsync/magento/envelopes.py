"""Webhook envelopes: which event a body carries, and the order reference inside it.

Dispatch is by table: each supported envelope registers the event names it carries and a
marshmallow schema for its shape. An unknown event is an ``EnvelopeError`` with field errors,
answered 422 by the receiver. The order itself is validated later, by the worker: the receiver
only needs to know which order changed.

- ``seed``: ``{"event": "sales_order_save_after", "order": {...}}``.
- ``adobe``: Adobe I/O Events (CloudEvents 1.0) with ``type``
  ``com.adobe.commerce.observer.sales_order_save_after`` and the order in ``data.value``, its
  values often strings (``"32444.000000"``).
"""

import datetime as dt
import hashlib
from dataclasses import dataclass

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate


class EnvelopeError(Exception):
    """The body is JSON but not an envelope magsync handles. ``errors`` maps fields to messages."""

    def __init__(self, errors):
        super().__init__("invalid webhook envelope")
        self.errors = errors


class OrderReferenceSchema(Schema):
    """The part of the order the receiver needs: which order, and which version."""

    class Meta:
        unknown = EXCLUDE

    entity_id = fields.Integer(required=True, strict=False, validate=validate.Range(min=1))
    increment_id = fields.String(required=True, validate=validate.Length(min=1, max=50))
    updated_at = fields.String(load_default=None, allow_none=True)


class SeedEnvelopeSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    event = fields.String(required=True)
    order = fields.Dict(required=True)


class AdobeDataSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    value = fields.Dict(required=True)


class AdobeEnvelopeSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    type = fields.String(required=True)
    id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    data = fields.Nested(AdobeDataSchema, required=True)


@dataclass(frozen=True)
class Envelope:
    """One envelope shape: its schema (an instance, shared by every request: a marshmallow
    schema keeps no state between loads), the events it carries and where the order sits."""

    name: str
    schema: Schema
    events: frozenset
    order_path: tuple
    id_key: str | None = None

    def order_of(self, loaded):
        for key in self.order_path:
            loaded = loaded[key]
        return loaded

    def nest_order_errors(self, errors):
        for key in reversed(self.order_path):
            errors = {key: errors}
        return errors

    def event_id_of(self, loaded, body):
        if self.id_key:
            return loaded[self.id_key]
        # Without an event id, the body's digest identifies a delivery, so a sender's retry of
        # the same body is recognisable downstream.
        return hashlib.sha256(body).hexdigest()[:32]


ENVELOPES = (
    Envelope("seed", SeedEnvelopeSchema(), frozenset({"sales_order_save_after"}), ("order",)),
    Envelope(
        "adobe",
        AdobeEnvelopeSchema(),
        frozenset({"com.adobe.commerce.observer.sales_order_save_after"}),
        ("data", "value"),
        id_key="id",
    ),
)
# Built once: instantiating a schema copies its fields, the costliest part of a webhook's check.
_ORDER_REFERENCE = OrderReferenceSchema()
_BY_EVENT = {event: env for env in ENVELOPES for event in env.events}
KNOWN_EVENTS = sorted(_BY_EVENT)


def parse(document, body):
    """Validate a decoded webhook body and return the event to enqueue (primitives only).

    Raises ``EnvelopeError`` for anything that is not a known event about an identifiable order.
    """
    if not isinstance(document, dict):
        raise EnvelopeError({"_schema": ["Webhook body must be a JSON object."]})
    event_name = document.get("event", document.get("type"))
    envelope = _BY_EVENT.get(event_name) if isinstance(event_name, str) else None
    if envelope is None:
        raise EnvelopeError(
            {"event": [f"Unknown or missing event; expected one of: {', '.join(KNOWN_EVENTS)}."]}
        )
    try:
        loaded = envelope.schema.load(document)
    except ValidationError as exc:
        raise EnvelopeError(exc.messages) from exc
    order = envelope.order_of(loaded)
    try:
        reference = _ORDER_REFERENCE.load(order)
    except ValidationError as exc:
        raise EnvelopeError(envelope.nest_order_errors(exc.messages)) from exc
    return {
        "event": event_name,
        "envelope": envelope.name,
        "event_id": envelope.event_id_of(loaded, body),
        "received_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "entity_id": reference["entity_id"],
        "increment_id": reference["increment_id"],
        "updated_at": reference["updated_at"],
        "order": order,
    }
