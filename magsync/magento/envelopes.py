"""Webhook envelopes: which event a body carries, and the order reference inside it.

Dispatch is by table: each supported envelope registers the event names it carries and a
marshmallow schema for its shape. An unknown event is an ``EnvelopeError`` with field errors,
answered 422 by the receiver. The order itself is validated later, by the worker: the receiver
only needs to know which order changed.

- ``seed``: ``{"event": "sales_order_save_after", "order": {...}}``.
- ``adobe``: Adobe I/O Events (CloudEvents 1.0) with ``type``
  ``com.adobe.commerce.observer.sales_order_save_after`` and the order in ``data.value``, its
  values often strings (``"32444.000000"``).

What the receiver checks of the order is what it must not get wrong: the ids (whole numbers in
Magento's unsigned 32-bit range, as JSON integers or digit strings), the amounts (finite, within
Magento's ``decimal(20,4)``) and the version (``updated_at`` a Magento timestamp, not more than
``MAGSYNC_MAX_CLOCK_SKEW`` ahead of now: a version from the future would make every later real
update look stale). ``load_json`` refuses bodies nested deeper than any Magento order is, and
``task_id`` names the task within AMQP's limits.
"""

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from magsync.magento.fields import MagentoDateTime, MagentoId, Money, too_far_ahead

# A Magento order nests a handful of levels (order, extension attributes, shipping assignment,
# address, street); Python's JSON decoder gives up near 1,000.
MAX_JSON_DEPTH = 64
# The task id travels as the message's correlation_id, an AMQP short string.
MAX_TASK_ID_BYTES = 255
DEFAULT_MAX_CLOCK_SKEW = 86400.0


class InvalidJson(ValueError):
    """The body is not JSON magsync can take (answered 400)."""


class EnvelopeError(Exception):
    """The body is JSON but not an envelope magsync handles. ``errors`` maps fields to messages."""

    def __init__(self, errors):
        super().__init__("invalid webhook envelope")
        self.errors = errors


class OrderReferenceSchema(Schema):
    """The part of the order the receiver needs: which order, and which version."""

    class Meta:
        unknown = EXCLUDE

    entity_id = MagentoId(required=True)
    increment_id = fields.String(required=True, validate=validate.Length(min=1, max=50))
    updated_at = MagentoDateTime(load_default=None, allow_none=True)
    grand_total = Money(load_default=None, allow_none=True)
    base_grand_total = Money(load_default=None, allow_none=True)


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


def load_json(body):
    """The decoded JSON ``body``; ``InvalidJson`` when it is not JSON or nests too deeply."""
    try:
        document = json.loads(body)
    except RecursionError:
        raise InvalidJson(f"Body nests deeper than {MAX_JSON_DEPTH} levels.") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidJson("Body is not valid JSON.") from None
    if _nests_deeper(document, MAX_JSON_DEPTH):
        raise InvalidJson(f"Body nests deeper than {MAX_JSON_DEPTH} levels.")
    return document


_CONTAINERS = frozenset({dict, list})


def _nests_deeper(document, limit):
    """True when ``document`` (as ``json.loads`` makes it) holds a container more than ``limit``
    levels down; walked one level at a time, looking only at the types JSON decodes to."""
    level = [document] if type(document) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                if type(child) in _CONTAINERS:
                    below.append(child)
        level = below
    return False


def task_id(event):
    """The task id of an event: ``<order number>:<event id>``, at most 255 bytes of UTF-8.

    A longer one (an event id of non-ASCII characters) keeps the order number and replaces the
    event id with its digest; order numbers are at most 50 characters, so the result fits.
    """
    candidate = f"{event['increment_id']}:{event['event_id']}"
    if len(candidate.encode("utf-8")) <= MAX_TASK_ID_BYTES:
        return candidate
    digest = hashlib.sha256(str(event["event_id"]).encode("utf-8")).hexdigest()[:32]
    return f"{event['increment_id']}:sha256-{digest}"


def parse(document, body, *, max_clock_skew=DEFAULT_MAX_CLOCK_SKEW, now=None):
    """Validate a decoded webhook body and return the event to enqueue (primitives only).

    Raises ``EnvelopeError`` for anything that is not a known event about an identifiable order,
    including an ``updated_at`` more than ``max_clock_skew`` seconds after ``now``.
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
    version = reference["updated_at"]
    if version is not None and too_far_ahead(version, max_clock_skew, now):
        message = f"Lies more than {max_clock_skew:g} seconds in the future."
        raise EnvelopeError(envelope.nest_order_errors({"updated_at": [message]}))
    return {
        "event": event_name,
        "envelope": envelope.name,
        "event_id": envelope.event_id_of(loaded, body),
        "received_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "entity_id": reference["entity_id"],
        "increment_id": reference["increment_id"],
        "updated_at": order.get("updated_at"),
        "order": order,
    }
