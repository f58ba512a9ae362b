"""What the mapping writes to Salesforce, learnt from the mapping itself, and whether the org's
fields fit it.

The outbound schemas are the marshmallow schemas of ``magsync.mapping`` that dump exactly the
Salesforce fields (inbound ones tolerate unknown fields: ``unknown = EXCLUDE``). ``targets``
dumps sample Magento orders (``probe_documents``) through each, with the deployment's settings,
and takes what comes out: the fields; from their values, the kind of each (text, email, number,
date, ...) and the text values written (every stage of the stage map, the lead source, the
currency); and how long text gets. Two samples carry text longer than Magento's columns (300
and 400 characters): a field whose value has the same length in both is cut by the mapping at
that length; one whose value grows passes the store's text through, so it may be as long as a
Magento column (255 characters).

Where the fields go is what each schema declares in ``class Meta`` (``magsync.mapping.records``),
read as declared, never guessed: ``salesforce_object``; ``salesforce_write`` (``upsert``,
``create`` or ``update``; an undeclared one is ``upsert`` with a ``salesforce_key`` and
``create`` without); ``salesforce_key`` (the ``Settings`` attribute naming the upsert key);
``salesforce_enabled`` (a ``Settings`` attribute or ``callable(settings)``; default: always);
``salesforce_rows`` (``callable(order, settings)``: the objects dumped for one order, when a
schema writes several records per order, such as its line items; default: the order). A
schema is outbound when it declares ``salesforce_object``. A field may declare
``metadata={"salesforce": {"type": ..., "length": ...}}`` (a kind of ``ACCEPTS``, and the most
characters it writes), which wins over what the samples show; links to other records (``Link``
fields) are declared ``reference``, and ``create_only`` when they are written only as a record
is created (an upsert leaves them out of an update: they need not be updateable).

``field_findings(target, describe)`` compares a target with its object's describe (``GET
/sobjects/{Type}/describe``): each field exists, can be written as the schema writes it
(createable when it creates or upserts, updateable when it updates or upserts, the key only
createable), has a type that holds what is written and room for it; the key is a unique External
ID; every picklist value written is active; and a schema that creates or upserts leaves out no
field the org requires on create.
"""

import datetime as dt
import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass
from decimal import Decimal

from marshmallow import Schema

from magsync.check.report import Finding
from magsync.mapping.order import ORDER_STATES, load_order
from magsync.mapping.records import CREATE, UPDATE, UPSERT

MAPPING_PACKAGE = "magsync.mapping"

# A kind of value the mapping writes -> the Salesforce field types that hold it. Text written
# into a picklist must also be one of its active values (checked separately).
ACCEPTS = {
    "text": frozenset(
        {"string", "textarea", "combobox", "phone", "url", "picklist", "multipicklist"}
    ),
    "email": frozenset({"email", "string", "textarea"}),
    "number": frozenset({"currency", "double"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"datetime"}),
    "boolean": frozenset({"boolean"}),
    "key": frozenset({"string"}),  # the order number: text with leading zeros
    "reference": frozenset({"reference"}),  # a link to another record: its id
}

# What Salesforce's Setup calls each field type, for the report.
TYPE_WORDS = {
    "string": "Text",
    "textarea": "Text Area",
    "combobox": "Combobox",
    "email": "Email",
    "currency": "Currency",
    "double": "Number",
    "int": "Number (integer)",
    "percent": "Percent",
    "date": "Date",
    "datetime": "Date/Time",
    "boolean": "Checkbox",
    "picklist": "Picklist",
    "multipicklist": "Multi-Select Picklist",
    "reference": "Lookup",
    "phone": "Phone",
    "url": "URL",
    "id": "Id",
}

# The type to choose for a kind, in Setup's words, for the fix of a type mismatch.
KIND_WORDS = {
    "text": "Text",
    "email": "Email or Text",
    "number": "Currency or Number",
    "date": "Date",
    "datetime": "Date/Time",
    "boolean": "Checkbox",
    "key": "Text (External ID, Unique)",
    "reference": "Lookup",
}

# What the mapping writes, per kind, in the words of a type mismatch.
WRITTEN_WORDS = {"key": "the order number", "reference": "record ids"}

# Field types whose describe ``length`` counts characters.
SIZED = frozenset({"string", "textarea", "email", "combobox", "phone", "url"})
PICKLISTS = frozenset({"picklist", "multipicklist"})

MAGENTO_TEXT = 255  # Magento's name, address and item name columns are varchar(255)
LONG_TEXT = (300, 400)  # longer than any of them, to see where the mapping cuts
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


# -- sample orders ---------------------------------------------------------------------------


def _text(base, length):
    if length is None:
        return base
    return ((base + " ") * (length // (len(base) + 1) + 1))[:length]


def _address(length):
    """A billing address whose free text ``length`` stretches (None: as a store has it)."""
    return {
        "firstname": _text("Probe", length),
        "lastname": _text("Buyer", length),
        "company": _text("Probe Trading", length),
        "street": [_text("1 Probe Street", length)],
        "city": _text("Probetown", length),
        "region": _text("Probe Region", length),
        "postcode": _text("12345", length),
        "country_id": "DE",
        "telephone": _text("+49 30 1234567", length),
        "email": "probe.buyer@example.com",
    }


def _document(number, state, *, length=None, guest=False, edited=False):
    """A Magento order (REST shape) for the samples; ``length`` stretches its free text."""
    address = _address(length)
    document = {
        "entity_id": 1,
        "increment_id": number,
        "state": state,
        "status": state,
        "grand_total": "1234.5600",
        "base_grand_total": "1234.5600",
        "order_currency_code": "EUR",
        "customer_email": "probe.buyer@example.com",
        "customer_firstname": None if guest else address["firstname"],
        "customer_lastname": None if guest else address["lastname"],
        "customer_is_guest": int(guest),
        "billing_address": address,
        "items": [
            {
                "item_id": 1,
                "sku": "PROBE-1",
                "name": _text("Probe product", length),
                "qty_ordered": "2.0000",
                "price": "617.2800",
                "product_type": "simple",
            }
        ],
        "created_at": "2024-01-15 10:00:00",
        "updated_at": "2024-01-15 10:05:00",
    }
    if edited:
        parent = number.rsplit("-", 1)[0]
        document.update(
            relation_parent_id=2,
            relation_parent_real_id=parent,
            original_increment_id=parent,
            edit_increment=1,
        )
    return document


def probe_documents(settings):
    """``(document, length)`` pairs: an order in each state of the stage map and one outside
    it, a guest's, an edited one (``<n>-1``), and two with long text (``length`` set)."""
    states = [s for s in settings.sf_stage_map if s in ORDER_STATES]
    states += [s for s in ORDER_STATES if s not in settings.sf_stage_map][:1]
    out = [(_document(f"{100000001 + i:09d}", state), None) for i, state in enumerate(states)]
    out.append((_document("100000101", "processing", guest=True), None))
    out.append((_document("100000102-1", "processing", edited=True), None))
    out.extend((_document(f"1000002{n}", "processing", length=n), n) for n in LONG_TEXT)
    return out


# -- what a schema writes --------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """One Salesforce field a schema writes.

    ``kind`` is None when no sample gave it a value and nothing declares it; ``length`` the
    longest text seen (or declared); ``bounded`` whether the mapping cuts text at that length;
    ``values`` the text values seen.
    """

    name: str
    kind: str | None
    length: int | None = None
    bounded: bool = True
    values: tuple = ()
    key: bool = False
    create_only: bool = False  # written only when the record is created (a line's links)


@dataclass(frozen=True)
class Target:
    """One outbound schema, the object it writes, and its fields under these settings."""

    schema: type
    sobject: str
    enabled: bool
    fields: tuple
    problem: str | None = None  # why the samples could not be dumped
    write: str = CREATE  # as the schema declares it: UPSERT, CREATE or UPDATE

    @property
    def label(self):
        return f"{self.sobject} ({self.schema.__name__})"


def _value_kind(value):
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, str):
        if _ISO_DATETIME.fullmatch(value[:19]) and len(value) > 10:
            return "datetime"
        if _ISO_DATE.fullmatch(value):
            return "date"
        if _EMAIL.fullmatch(value):
            return "email"
        return "text"
    return None


def _kind(values):
    kinds = {_value_kind(v) for v in values}
    if len(kinds) == 1:
        return kinds.pop()
    if kinds <= {"text", "email"}:
        return "text"
    return None


def _switch(setting, settings):
    if setting is None:
        return True
    if callable(setting):
        return bool(setting(settings))
    return bool(getattr(settings, setting))


def _instance(schema, settings):
    """The schema built as the mapping builds it: with the settings when it takes them."""
    if "settings" in inspect.signature(schema.__init__).parameters:
        return schema(settings=settings)
    return schema()


def _spec(name, samples, declared, key):
    """A ``FieldSpec`` from the values ``samples`` (``[(length, value)]``) show for ``name``."""
    values = [v for _, v in samples if v is not None]
    texts = tuple(dict.fromkeys(v for v in values if isinstance(v, str)))
    stretched = {len(v) for n, v in samples if n is not None and isinstance(v, str)}
    # The mapping cuts the text when samples stretched to different lengths come out alike;
    # otherwise it passes the store's text through, which is at most a Magento column long.
    bounded = len(stretched) <= 1
    usual = [len(v) for n, v in samples if n is None and isinstance(v, str)]
    length = max([*usual, *stretched], default=None) if bounded else max([MAGENTO_TEXT, *usual])
    kind = "key" if key else _kind(values)
    if declared.get("type"):
        kind = declared["type"]
    if declared.get("length"):
        length, bounded = declared["length"], True
    create_only = bool(declared.get("create_only"))
    return FieldSpec(name, kind, length, bounded, texts, key, create_only)


def _declared_write(meta):
    write = getattr(meta, "salesforce_write", None)
    if write is None:
        return UPSERT if getattr(meta, "salesforce_key", None) else CREATE
    return write


def _declared_key(meta, write, settings):
    """The upsert key's field name, as the settings name the declared ``salesforce_key``."""
    if write != UPSERT:
        return None
    setting = getattr(meta, "salesforce_key", None)
    if not setting:
        raise ValueError("an upserting schema must declare salesforce_key in its Meta")
    return getattr(settings, setting)


def _dumps(schema, settings):
    """``[(length, fields)]``: the samples dumped through ``schema``."""
    instance = _instance(schema, settings)
    # A schema that writes several records per order (line items) says which in ``Meta``.
    rows = getattr(schema.Meta, "salesforce_rows", None) or (lambda order, _: [order])
    return [
        (length, instance.dump(row))
        for document, length in probe_documents(settings)
        for row in rows(load_order(document), settings)
    ]


def _target(schema, settings):
    meta = schema.Meta
    sobject = getattr(meta, "salesforce_object", None)
    write = _declared_write(meta)
    enabled = _switch(getattr(meta, "salesforce_enabled", None), settings)
    if not sobject:
        problem = "its Meta declares no salesforce_object"
        return Target(schema, schema.__name__, enabled, (), problem=problem, write=write)
    declared = {
        (f.data_key or n): f.metadata.get("salesforce") or {}
        for n, f in schema._declared_fields.items()
        if not f.load_only
    }
    try:
        key = _declared_key(meta, write, settings)
        dumps = _dumps(schema, settings)
    except Exception as exc:  # any failure of the mapping is reported, not raised
        problem = f"{type(exc).__name__}: {exc}"
        return Target(schema, sobject, enabled, (), problem=problem, write=write)
    names = list(dict.fromkeys([*declared, *(n for _, dump in dumps for n in dump)]))
    specs = tuple(
        _spec(
            name,
            [(length, dump.get(name)) for length, dump in dumps],
            declared.get(name, {}),
            name == key,
        )
        for name in names
    )
    return Target(schema, sobject, enabled, specs, write=write)


def mapping_schemas(package=MAPPING_PACKAGE):
    """The outbound schema classes of ``package``'s modules (those that declare their
    ``salesforce_object``), in module and definition order."""
    found = []
    root = importlib.import_module(package)
    for info in pkgutil.iter_modules(root.__path__, f"{package}."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Schema)
                and value.__module__ == module.__name__
                and getattr(value.Meta, "salesforce_object", None)
            ):
                found.append(value)
    return found


def targets(settings, schemas=None):
    """Each outbound schema (all of ``magsync.mapping`` unless given) as a ``Target``."""
    return [_target(schema, settings) for schema in schemas or mapping_schemas()]


# -- comparing with the org ------------------------------------------------------------------


def _type_words(described, length=None):
    words = TYPE_WORDS.get(described["type"], described["type"])
    length = length or described.get("length")
    return f"{words}({length})" if described["type"] in SIZED and length else words


def _where(sobject, name):
    return f"Setup > Object Manager > {sobject} > Fields & Relationships > {name}"


# What the integration user must be able to do with a field, as its schema writes it: an upsert
# creates a record or updates the fields it does not create.
_NEEDED = {
    UPSERT: ("createable", "updateable"),
    CREATE: ("createable",),
    UPDATE: ("updateable",),
}


def _access(target, spec, described):
    needed = _NEEDED[target.write]
    if spec.key or spec.create_only:
        needed = ("createable",)  # an upsert's URL carries the key: it is only ever created
    missing = [flag for flag in needed if not described.get(flag)]
    if missing:
        yield Finding.fail(
            f"{target.sobject}.{spec.name}",
            f"the integration user cannot write it ({' and '.join(missing)}: false)",
            "give the user's profile or permission set Edit access to the field "
            f"({_where(target.sobject, spec.name)}); formula and roll-up fields cannot be "
            "written at all",
        )


def _type(target, spec, described):
    subject = f"{target.sobject}.{spec.name}"
    if spec.kind is None:
        yield Finding.warn(
            subject,
            "no sample order gave it a value, so its type and length are not checked",
            "declare it on the schema's field: metadata={'salesforce': {'type': ...}}",
        )
        return
    if described["type"] not in ACCEPTS[spec.kind]:
        written = WRITTEN_WORDS.get(spec.kind, f"{spec.kind} values")
        yield Finding.fail(
            subject,
            f"is a {_type_words(described)} field; the mapping writes {written} into it",
            f"change its type to {KIND_WORDS[spec.kind]} ({_where(target.sobject, spec.name)})",
        )
        return
    room = described.get("length") or 0
    if not spec.length or described["type"] not in SIZED or room >= spec.length:
        return
    if spec.bounded:
        yield Finding.fail(
            subject,
            f"holds {room} characters; the mapping writes up to {spec.length}",
            f"make it a {_type_words(described, spec.length)} field or longer "
            f"({_where(target.sobject, spec.name)})",
        )
    else:
        yield Finding.warn(
            subject,
            f"holds {room} characters; the mapping passes the store's text through uncut (up "
            f"to {spec.length}), and Salesforce refuses a longer value (STRING_TOO_LONG): that "
            "order would be dead-lettered",
            f"make it longer ({_where(target.sobject, spec.name)}), or have the mapping cut it",
        )


def _picklist(target, spec, described):
    if described["type"] not in PICKLISTS:
        return
    entries = described.get("picklistValues") or ()
    active = {entry["value"] for entry in entries if entry.get("active")}
    known = {entry["value"] for entry in entries}
    for value in spec.values:
        if value in active:
            continue
        state = "is an inactive value" if value in known else "is not a value"
        yield Finding.fail(
            f"{target.sobject}.{spec.name}",
            f"{value!r} {state} of the picklist, and the mapping writes it",
            f"add or activate {value!r} ({_where(target.sobject, spec.name)}), or change the "
            "setting that produces it",
        )


def _key(target, spec, described):
    subject = f"{target.sobject}.{spec.name}"
    if not described.get("externalId"):
        yield Finding.fail(
            subject,
            "is not flagged External ID, so upserts by order number cannot use it",
            f"edit the field, tick External ID and Unique ({_where(target.sobject, spec.name)})",
        )
    elif not described.get("unique"):
        yield Finding.fail(
            subject,
            "is an External ID but not Unique: two records may carry one order number, and "
            "that order's upserts then fail (300 Multiple Choices)",
            f"edit the field, tick Unique, after removing duplicates "
            f"({_where(target.sobject, spec.name)})",
        )


# The comparisons of one field with its describe, in order; each yields failures or warnings.
FIELD_RULES = (_access, _type, _picklist)
KEY_RULES = (*FIELD_RULES, _key)


def _required_but_unwritten(target, describe):
    if target.write == UPDATE:
        return  # an update leaves the fields it does not write as they are
    written = {spec.name.lower() for spec in target.fields}
    for described in describe["fields"]:
        if (
            described.get("createable")
            and not described.get("nillable", True)
            and not described.get("defaultedOnCreate")
            and described["name"].lower() not in written
        ):
            yield Finding.fail(
                f"{target.sobject}.{described['name']}",
                f"is required to create a {target.sobject} and the mapping does not write it",
                "make it optional or give it a default "
                f"({_where(target.sobject, described['name'])})",
            )


def field_findings(target, describe):
    """The findings for ``target`` against its object's describe: its problems, or one ``ok``."""
    if target.problem:
        return [
            Finding.fail(
                target.label,
                f"the mapping failed on a sample order ({target.problem})",
                "this is a bug in magsync's mapping: report it with this message",
            )
        ]
    by_name = {f["name"].lower(): f for f in describe["fields"]}
    found = []
    for spec in target.fields:
        described = by_name.get(spec.name.lower())
        if described is None:
            found.append(
                Finding.fail(
                    f"{target.sobject}.{spec.name}",
                    "does not exist, or the integration user cannot see it",
                    f"create it on {target.sobject} or give the user's profile access to it "
                    f"({_where(target.sobject, spec.name)})",
                )
            )
            continue
        rules = KEY_RULES if spec.key else FIELD_RULES
        found.extend(finding for rule in rules for finding in rule(target, spec, described))
    found.extend(_required_but_unwritten(target, describe))
    if any(f.status == "fail" for f in found):
        return sorted(found, key=lambda f: f.status != "fail")  # failures first, stable
    return [Finding.ok(target.label, _summary(target, by_name)), *found]


_WRITTEN = {UPSERT: "created and updated", CREATE: "created", UPDATE: "updated"}


def _summary(target, by_name):
    written = _WRITTEN[target.write]
    if len(target.fields) == 1:
        head = f"{target.fields[0].name}, the one field the mapping writes, exists, can be "
        parts = [f"{head}{written}, and holds what it writes"]
    else:
        count = len(target.fields)
        parts = [
            f"the {count} fields the mapping writes exist, can be {written}, and hold what it "
            "writes"
        ]
    parts.extend(f"{s.name} is a unique External ID" for s in target.fields if s.key)
    for spec in target.fields:
        if by_name[spec.name.lower()]["type"] in PICKLISTS and spec.values:
            values = ", ".join(repr(v) for v in spec.values)
            parts.append(f"{spec.name} {values} {'is' if len(spec.values) == 1 else 'are'} active")
    return "; ".join(parts)
