"""What the mapping hands the writer, and how an outbound schema says where its fields go.

An outbound schema (an ``OutboundSchema``) dumps a canonical ``Order`` as the fields of one
Salesforce write and declares in ``class Meta`` where they go. ``magsync check`` reads the same
declarations, so what is checked is what is written:

- ``salesforce_object``: the sObject written, such as ``"Opportunity"``;
- ``salesforce_write``: ``UPSERT`` (by external id), ``CREATE`` (records only ever created, such
  as a buyer's Account) or ``UPDATE`` (an existing record, by its Id);
- ``salesforce_key``: for an upsert, the ``Settings`` attribute naming the external-id field
  (its value is the order's number);
- ``salesforce_enabled`` (optional): a ``Settings`` attribute or ``callable(settings)``; when
  false the schema is not written with these settings.

Links to other records (``AccountId``, a contact role's ``OpportunityId``) are ``Link`` fields
(``Link(create_only=True)``: given only when the record is created, as a line item's).
Their values are Salesforce ids, or Composite references to records the same call creates, and
are known only at write time: the schema gets them as ``links``; built without them, it leaves
them out (an order's version is hashed without its links).

The writes themselves: ``Record`` (an upsert by external id), ``NewRecord`` (a create) and
``Update`` (an update by Id).
"""

import dataclasses
import threading
from dataclasses import dataclass, field

from marshmallow import Schema, fields, missing, post_dump

UPSERT = "upsert"
CREATE = "create"
UPDATE = "update"


@dataclass(frozen=True)
class Record:
    """One record to upsert: its object, its external-id field and value, its fields, and its
    links to other records (kept apart: they are not part of the order's version).

    ``children``: what is written with it and is part of the order's version too (an
    Opportunity's line items, ``magsync.mapping.lines.Line``), empty for most records.
    """

    sobject: str
    external_id_field: str
    external_id: str
    fields: dict
    links: dict = field(default_factory=dict)
    children: tuple = ()

    def body(self):
        """The fields and links without the external-id field (an upsert URL carries that one)."""
        own = {k: v for k, v in self.fields.items() if k != self.external_id_field}
        return {**own, **self.links}

    def payload(self):
        """The fields and links, the external-id field included (a Collections record)."""
        return {**self.fields, **self.links}

    def linked(self, **links):
        """This record with ``links`` added."""
        return dataclasses.replace(self, links={**self.links, **links})


@dataclass(frozen=True)
class NewRecord:
    """One record to create."""

    sobject: str
    fields: dict


@dataclass(frozen=True)
class Update:
    """Fields to write on an existing record, by its Id."""

    sobject: str
    record_id: str
    fields: dict


class Link(fields.Field):
    """A lookup to another record, written as the Salesforce id (or Composite reference) the
    schema was given in ``links``; left out when none was given."""

    def __init__(self, create_only=False, **kwargs):
        declared = {"type": "reference", **({"create_only": True} if create_only else {})}
        super().__init__(dump_only=True, metadata={"salesforce": declared}, **kwargs)

    def serialize(self, attr, obj, accessor=None, **kwargs):
        return self.parent.links.get(self.data_key or attr, missing)


_built = threading.local()


class OutboundSchema(Schema):
    """Base of the outbound schemas: built with the settings and, at write time, the links."""

    def __init__(self, settings=None, *, links=None, **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        self.links = dict(links or {})

    @classmethod
    def of(cls, settings=None, *, links=None, **state):
        """This schema for ``settings`` with ``links`` and ``state`` (what the subclass takes,
        such as an Opportunity's previous stage), built once per thread: marshmallow builds a
        schema's fields when it is made, which costs more than the dump itself. Callers give
        every attribute the subclass keeps, so nothing of a previous dump carries over."""
        schemas = getattr(_built, "schemas", None)
        if schemas is None:
            schemas = _built.schemas = {}
        schema = schemas.get(cls)
        if schema is None or schema.settings is not settings:
            schema = schemas[cls] = cls(settings)
        schema.links = dict(links or {})
        for name, value in state.items():
            setattr(schema, name, value)
        return schema

    @classmethod
    def external_id_field(cls, settings):
        """The upsert key this schema declares, as the settings name it."""
        return getattr(settings, cls.Meta.salesforce_key)

    @post_dump(pass_original=True)
    def add_key(self, data, order, **kwargs):
        if getattr(self.Meta, "salesforce_write", None) == UPSERT:
            data[self.external_id_field(self.settings)] = order.increment_id
        return data

    def record(self, order):
        """The ``Record`` upserting ``order`` under its number (``UPSERT`` schemas)."""
        fields_ = self.dump(order)
        links = {name: fields_.pop(name) for name in self.link_names() if name in fields_}
        return Record(
            sobject=self.Meta.salesforce_object,
            external_id_field=self.external_id_field(self.settings),
            external_id=order.increment_id,
            fields=fields_,
            links=links,
        )

    def new_record(self, order):
        """The ``NewRecord`` for ``order`` (``CREATE`` schemas)."""
        return NewRecord(self.Meta.salesforce_object, self.dump(order))

    def update(self, order, record_id):
        """The ``Update`` of record ``record_id`` for ``order`` (``UPDATE`` schemas)."""
        return Update(self.Meta.salesforce_object, record_id, self.dump(order))

    @classmethod
    def link_names(cls):
        return [
            f.data_key or name for name, f in cls._declared_fields.items() if isinstance(f, Link)
        ]
