"""An org's validation of a record body, and the object rules Salesforce applies on save.

``prepare()`` turns a JSON record body into canonical field values or raises ``SalesforceError``
in the order Salesforce reports problems: unknown fields (INVALID_FIELD) and values that cannot be
deserialized (JSON_PARSER_ERROR) first, then fields that cannot be written
(INVALID_FIELD_FOR_INSERT_UPDATE), then values of the wrong kind
(INVALID_TYPE_ON_FIELD_IN_RECORD), missing required fields (REQUIRED_FIELD_MISSING, all listed
in one error), field values (STRING_TOO_LONG, INVALID_EMAIL_ADDRESS,
INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST, NUMBER_OUTSIDE_VALID_RANGE, MALFORMED_ID,
INVALID_CROSS_REFERENCE_KEY), the org's custom validation rules (FIELD_CUSTOM_VALIDATION_EXCEPTION),
unique values (DUPLICATE_VALUE), then the object's own rules
(``RULES``, by object name), which may also derive fields (Opportunity stage values, line item
prices).

How Salesforce's JSON deserializer treats values: scalars are coerced to text; numeric and
boolean strings (``"99.99"``, ``"true"``) are accepted for numbers and checkboxes; a string that
does not parse as the field's type is a JSON_PARSER_ERROR for the whole request; a JSON value of
another kind (a number for a checkbox or a date) is INVALID_TYPE_ON_FIELD_IN_RECORD.
"""

import datetime
import decimal
import json
import re

from magsync.sandbox.salesforce import ids
from magsync.sandbox.salesforce.errors import SalesforceError, bad_request, json_parser_error
from magsync.sandbox.salesforce.schema import NUMBER_TYPES
from magsync.sandbox.salesforce.store import index_key

_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
WRITE_DENIED = (
    "Unable to create/update fields: {}. Please check the security settings of this field and "
    "verify that it is read/write for your profile or permission set."
)


def id_in_body():
    return bad_request("INVALID_FIELD", "The Id field should not be specified in the sobject data.")


def _json_kind(value):
    if isinstance(value, dict):
        return "START_OBJECT", "{"
    if isinstance(value, list):
        return "START_ARRAY", "["
    return "VALUE_STRING", str(value)


def _position(raw, key):
    """``[line:L, column:C]`` of the value of ``key`` in the raw JSON text, as Jackson reports."""
    if not raw:
        return "[line:1, column:1]"
    match = re.search(r'"' + re.escape(key) + r'"\s*:\s*', raw)
    end = match.end() if match else 0
    if match:
        try:
            _, end = json.JSONDecoder().raw_decode(raw, match.end())
        except ValueError:
            end = match.end()
    line = raw.count("\n", 0, end) + 1
    column = end - (raw.rfind("\n", 0, end) + 1) + 1
    return f"[line:{line}, column:{column}]"


def _cannot_deserialize(kind, value, raw, key):
    token, shown = _json_kind(value)
    return json_parser_error(
        f"Cannot deserialize instance of {kind} from {token} value {shown} "
        f"or request may be missing a required field at {_position(raw, key)}"
    )


def _wrong_type(f, value):
    shown = json.dumps(value) if isinstance(value, bool) else value
    return bad_request(
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        f"{f.label}: value not of required type: {shown}",
        [f.name],
    )


def _to_text(f, value, raw, key):
    if isinstance(value, (dict, list)):
        raise _cannot_deserialize("string", value, raw, key)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _to_boolean(f, value, raw, key):
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _cannot_deserialize("boolean", value, raw, key)
    if isinstance(value, (dict, list)):
        raise _cannot_deserialize("boolean", value, raw, key)
    raise _wrong_type(f, value)


def _to_number(f, value, raw, key):
    kind = "int" if f.type == "int" else "double"
    if isinstance(value, bool):
        raise _wrong_type(f, value)
    if isinstance(value, (dict, list)):
        raise _cannot_deserialize(kind, value, raw, key)
    try:
        number = decimal.Decimal(value.strip() if isinstance(value, str) else repr(value))
    except (decimal.InvalidOperation, ValueError):
        raise _cannot_deserialize(kind, value, raw, key) from None
    if not number.is_finite():
        raise _cannot_deserialize(kind, value, raw, key)
    if f.type == "int":
        if number != number.to_integral_value():
            raise _wrong_type(f, value)
        return int(number)
    # Salesforce rounds to the field's scale (half up) instead of refusing extra decimals.
    rounded = number.quantize(decimal.Decimal(1).scaleb(-f.scale), decimal.ROUND_HALF_UP)
    return int(rounded) if f.scale == 0 else float(rounded)


def _to_date(f, value, raw, key):
    if isinstance(value, (bool, int, float)):
        raise _wrong_type(f, value)
    if isinstance(value, (dict, list)) or not _DATE.match(value):
        raise _cannot_deserialize("date", value, raw, key)
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        raise _cannot_deserialize("date", value, raw, key) from None
    return value


def parse_datetime(value):
    """A timezone-aware datetime from the ISO 8601 forms Salesforce accepts, or None."""
    match = _DATETIME.match(value) if isinstance(value, str) else None
    if not match:
        return None
    day, hour, minute, second, fraction, zone = match.groups()
    try:
        date = datetime.date.fromisoformat(day)
        micro = int((fraction or "0").ljust(6, "0")[:6])
        moment = datetime.datetime(
            date.year,
            date.month,
            date.day,
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
        )
    except ValueError:
        return None
    offset = datetime.timedelta(0)
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return moment.replace(tzinfo=datetime.timezone(offset)).astimezone(datetime.UTC)


def _to_datetime(f, value, raw, key):
    if isinstance(value, (bool, int, float)):
        raise _wrong_type(f, value)
    moment = parse_datetime(value) if isinstance(value, str) else None
    if moment is None:
        raise _cannot_deserialize("datetime", value, raw, key)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


_COERCE = {
    "id": _to_text,
    "reference": _to_text,
    "string": _to_text,
    "textarea": _to_text,
    "email": _to_text,
    "phone": _to_text,
    "url": _to_text,
    "picklist": _to_text,
    "boolean": _to_boolean,
    "currency": _to_number,
    "double": _to_number,
    "percent": _to_number,
    "int": _to_number,
    "date": _to_date,
    "datetime": _to_datetime,
}


def coerce(f, value, raw=None, key=None):
    """``value`` as field ``f`` stores it, by the deserializer's rules above; raises
    JSON_PARSER_ERROR or INVALID_TYPE_ON_FIELD_IN_RECORD as ``prepare`` would."""
    if value is None:
        return None
    return _COERCE[f.type](f, value, raw, key or f.name)


def _check_value(store, f, value):
    """Field-level checks of a coerced, non-null value."""
    if f.type == "picklist" and f.restricted and value not in f.picklist:
        raise bad_request(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"{f.label}: bad value for restricted picklist field: {value}",
            [f.name],
        )
    if isinstance(value, str) and f.length and len(value) > f.length:
        raise bad_request(
            "STRING_TOO_LONG",
            f"{f.label}: data value too large: {value} (max length={f.length})",
            [f.name],
        )
    if f.type == "email" and value and not _EMAIL.match(value):
        raise bad_request(
            "INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {value}", [f.name]
        )
    if f.type in NUMBER_TYPES:
        whole = (f.digits or 18) if f.type == "int" else (f.precision or 18) - f.scale
        if abs(value) >= 10**whole:
            raise bad_request(
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"{f.label}: value outside of valid range on numeric field: {value}",
                [f.name],
            )
    if f.type == "reference":
        _check_reference(store, f, value)


def _check_reference(store, f, value):
    key = ids.normalize(value)
    if key is None:
        raise bad_request(
            "MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name]
        )
    if "User" in f.reference_to:
        if key == ids.normalize(store.user_id):
            return
        raise bad_request(
            "INVALID_CROSS_REFERENCE_KEY", f"{f.label}: invalid cross reference id", [f.name]
        )
    target = store.schema.by_prefix.get(key[:3])
    if target is None or target.name not in f.reference_to:
        raise bad_request(
            "FIELD_INTEGRITY_EXCEPTION", f"{f.label}: id value of incorrect type: {value}", [f.name]
        )
    if store.get(target.name, key) is None:
        raise bad_request(
            "INVALID_CROSS_REFERENCE_KEY", f"{f.label}: invalid cross reference id", [f.name]
        )


def prepare(store, obj, body, *, existing=None, raw=None):
    """Canonical values to store for ``body`` on ``obj`` (create when ``existing`` is None).

    Raises ``SalesforceError`` (see the module docstring for the order of checks). The result
    includes derived values; ``existing`` is the stored record being updated.
    """
    creating = existing is None
    values = {}
    for key, value in body.items():
        if key == "attributes":
            continue
        f = obj.field(key)
        if f is None:
            raise bad_request(
                "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}"
            )
        values[f.name] = None if value is None else _COERCE[f.type](f, value, raw, key)
    if "Id" in values:
        raise id_in_body()
    denied = [
        name
        for name in values
        if not (obj.fields[name].createable if creating else obj.fields[name].updateable)
    ]
    if denied:
        raise bad_request(
            "INVALID_FIELD_FOR_INSERT_UPDATE", WRITE_DENIED.format(", ".join(denied)), denied
        )
    if creating:
        for f in obj.fields.values():
            # System fields are set by the store, derived currencies by the object's rules.
            if f.name not in values and f.default is not None and (f.createable or not f.system):
                values[f.name] = f.default
        if "OwnerId" in obj.fields and values.get("OwnerId") is None:
            values["OwnerId"] = store.user_id
    merged = dict(existing or {})
    merged.update(values)
    _apply_rules(store, obj, "before", merged, values, existing)
    missing = [
        f.name
        for f in obj.fields.values()
        if f.required and merged.get(f.name) in (None, "") and (creating or f.name in values)
    ]
    if missing:
        raise bad_request(
            "REQUIRED_FIELD_MISSING",
            f"Required fields are missing: [{', '.join(missing)}]",
            missing,
        )
    for name, value in values.items():
        if value is not None:
            _check_value(store, obj.fields[name], value)
    # Custom validation rules run after the system checks, before duplicate checks.
    for rule in obj.validation_rules:
        if rule.refuses(merged):
            raise bad_request(
                "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                rule.message,
                [rule.error_field] if rule.error_field else [],
            )
    _check_unique(store, obj, values, existing)
    _apply_rules(store, obj, "after", merged, values, existing)
    return values


def _check_unique(store, obj, values, existing):
    for name, value in values.items():
        f = obj.fields[name]
        if not f.unique or value is None:
            continue
        clashes = [
            rid
            for rid in store.find(obj.name, name, value)
            if not existing or rid != existing["Id"]
        ]
        if clashes:
            raise bad_request(
                "DUPLICATE_VALUE",
                f"duplicate value found: {name} duplicates value on record with id: {clashes[0]}",
                [],
            )


def same_key(f, left, right):
    """True when two values of field ``f`` denote the same external id."""
    return index_key(f, left) == index_key(f, right)


# -- object rules ----------------------------------------------------------------------------


def _derive_stage(store, obj, phase, merged, values, existing):
    """Opportunity: the stage sets IsClosed/IsWon, and Probability/ForecastCategoryName unless
    the request sets them, as OpportunityStage does in Salesforce."""
    if phase != "after" or "StageName" not in values:
        return
    stage = obj.stages.get(merged.get("StageName"))
    if stage is None:
        return
    derived = {"IsClosed": stage["closed"], "IsWon": stage["won"]}
    if "Probability" not in values or values["Probability"] is None:
        derived["Probability"] = stage["probability"]
    if "ForecastCategoryName" not in values or values["ForecastCategoryName"] is None:
        derived["ForecastCategoryName"] = stage["forecastCategory"]
    for name, value in derived.items():
        if name in obj.fields:
            values[name] = merged[name] = value
    _expected_revenue(obj, merged, values)


def _expected_revenue(obj, merged, values):
    if "ExpectedRevenue" in obj.fields and merged.get("Amount") is not None:
        probability = merged.get("Probability") or 0
        values["ExpectedRevenue"] = round(merged["Amount"] * probability / 100, 2)


def _locked_by_lines(existing, values):
    """The fields an update may not change on an Opportunity with line items (Pricebook2Id,
    CurrencyIsoCode): "The API rejects any attempt to update these fields" (SOAP API object
    reference, OpportunityLineItem, quoted at salesforce.stackexchange.com/tags/
    opportunity-lineitem/info). The error's shape is assumed."""
    if not (existing and existing.get("HasOpportunityLineItem")):
        return
    for name, reason in (
        ("Pricebook2Id", "cannot change pricebook on opportunity with line items"),
        ("CurrencyIsoCode", "cannot change currency on opportunity with line items"),
    ):
        if name in values and _changed(existing.get(name), values[name]):
            raise _integrity(name, reason)


def _changed(old, new):
    if ids.normalize(old) is not None:
        return ids.normalize(old) != ids.normalize(new)
    return old != new


def _opportunity(store, obj, phase, merged, values, existing):
    _derive_stage(store, obj, phase, merged, values, existing)
    if phase == "after":
        _locked_by_lines(existing, values)
    if phase == "after" and "Amount" in values:
        if existing and existing.get("HasOpportunityLineItem"):
            # With products attached, Amount is the sum of their total prices.
            values["Amount"] = existing.get("Amount")
        _expected_revenue(obj, merged | values, values)


def _person_name(store, obj, phase, merged, values, existing):
    """Contact and Lead: Name is First + Last."""
    if phase == "after" and ("FirstName" in values or "LastName" in values):
        values["Name"] = " ".join(p for p in (merged.get("FirstName"), merged.get("LastName")) if p)


def _pricebook_entry(store, obj, phase, merged, values, existing):
    if phase != "after" or existing is not None:
        return
    product = store.get("Product2", merged["Product2Id"])
    values["Name"] = product.get("Name")
    values["ProductCode"] = product.get("ProductCode")
    pricebook = store.get("Pricebook2", merged["Pricebook2Id"])
    currency = merged.get("CurrencyIsoCode")
    same = [
        entry
        for entry in (
            store.get("PricebookEntry", rid)
            for rid in store.find("PricebookEntry", "Product2Id", product["Id"])
        )
        if entry.get("CurrencyIsoCode") == currency
    ]
    if any(entry["Pricebook2Id"] == pricebook["Id"] for entry in same):
        raise bad_request(
            "DUPLICATE_VALUE", "This price definition already exists in this price book", []
        )
    if not pricebook.get("IsStandard"):
        standard = [e for e in same if store.get("Pricebook2", e["Pricebook2Id"]).get("IsStandard")]
        if not standard:
            raise bad_request(
                "STANDARD_PRICE_NOT_DEFINED",
                "Before creating a custom price, create a standard price.",
                [],
            )


def _integrity(field_name, reason):
    return bad_request(
        "FIELD_INTEGRITY_EXCEPTION",
        f"field integrity exception: {field_name} ({reason})",
        [field_name],
    )


def _line_item(store, obj, phase, merged, values, existing):
    """OpportunityLineItem: exactly one of UnitPrice / TotalPrice, an active entry of the
    opportunity's price book and currency; Salesforce fills in the rest."""
    if phase == "before":
        return
    both = values.get("UnitPrice") is not None and values.get("TotalPrice") is not None
    if both and existing is not None:
        # An update answers INVALID_FIELD (an Apex DmlException quoted at fishofprey.com,
        # 2012/05, "salesforce-unable-to-set").
        raise bad_request(
            "INVALID_FIELD",
            "Cannot change both 'UnitPrice' and 'TotalPrice' in update call",
            ["UnitPrice"],
        )
    if both:
        raise _integrity("TotalPrice", "cannot specify both unit price and total price")
    if existing is None and values.get("UnitPrice") is None and values.get("TotalPrice") is None:
        raise _integrity("unknown", "must specify either unit price or total price")
    if existing is None:
        entry = store.get("PricebookEntry", merged["PricebookEntryId"])
        opportunity = store.get("Opportunity", merged["OpportunityId"])
        if not entry.get("IsActive"):
            raise _integrity("PricebookEntryId", "pricebook entry is inactive")
        if not (store.get("Pricebook2", entry["Pricebook2Id"]) or {}).get("IsActive"):
            # Assumed shape: the docs require an entry of an active price book.
            raise _integrity("PricebookEntryId", "pricebook entry is in an inactive pricebook")
        pricebook = opportunity.get("Pricebook2Id")
        if pricebook and ids.normalize(pricebook) != ids.normalize(entry["Pricebook2Id"]):
            raise _integrity(
                "PricebookEntryId",
                "pricebook entry is in a different pricebook than the one assigned to the "
                "opportunity",
            )
        if opportunity.get("CurrencyIsoCode") != entry.get("CurrencyIsoCode"):
            raise _integrity(
                "PricebookEntryId",
                "pricebook entry currency code does not match opportunity currency code",
            )
        values["Product2Id"] = entry["Product2Id"]
        values["ListPrice"] = entry["UnitPrice"]
        values["ProductCode"] = entry.get("ProductCode")
        values["Name"] = f"{opportunity.get('Name')} {entry.get('Name')}"
        if "CurrencyIsoCode" in obj.fields:
            values["CurrencyIsoCode"] = entry.get("CurrencyIsoCode")
    # Currency arithmetic in decimals, to the cent, half up (floats would make 3 x 1.15 = 3.44).
    quantity = _dec(merged.get("Quantity"))
    discount = _dec(merged.get("Discount")) / 100
    if values.get("TotalPrice") is not None:
        unit = _cents(_dec(values["TotalPrice"]) / quantity) if quantity else decimal.Decimal(0)
        values["UnitPrice"] = float(unit)
    else:
        values["TotalPrice"] = float(
            _cents(_dec(merged.get("UnitPrice")) * quantity * (1 - discount))
        )


def _dec(value):
    return decimal.Decimal(str(value)) if value is not None else decimal.Decimal(0)


def _cents(value):
    return value.quantize(decimal.Decimal("0.01"), rounding=decimal.ROUND_HALF_UP)


def _after_line_item_change(store, opportunity_id):
    """Roll line items up into their opportunity (Amount, price book, HasOpportunityLineItem)."""
    opportunity = store.get("Opportunity", opportunity_id)
    if opportunity is None:
        return
    items = [
        store.get("OpportunityLineItem", rid)
        for rid in store.find("OpportunityLineItem", "OpportunityId", opportunity_id)
    ]
    changes = {"HasOpportunityLineItem": bool(items)}
    if items:
        changes["Amount"] = float(sum((_dec(item.get("TotalPrice")) for item in items), _dec(0)))
        changes["TotalOpportunityQuantity"] = sum(item.get("Quantity") or 0 for item in items)
        if not opportunity.get("Pricebook2Id"):
            entry = store.get("PricebookEntry", items[0]["PricebookEntryId"])
            changes["Pricebook2Id"] = entry["Pricebook2Id"]
        probability = opportunity.get("Probability") or 0
        changes["ExpectedRevenue"] = round(changes["Amount"] * probability / 100, 2)
    store.update("Opportunity", opportunity["Id"], changes)


RULES = {
    "Opportunity": _opportunity,
    "Contact": _person_name,
    "Lead": _person_name,
    "PricebookEntry": _pricebook_entry,
    "OpportunityLineItem": _line_item,
}

# Records that Salesforce deletes with their parent (master-detail and cascading lookups).
CASCADE = {
    "Account": (("Contact", "AccountId"), ("Opportunity", "AccountId")),
    "Contact": (("OpportunityContactRole", "ContactId"),),
    "Opportunity": (
        ("OpportunityLineItem", "OpportunityId"),
        ("OpportunityContactRole", "OpportunityId"),
    ),
    "Product2": (("PricebookEntry", "Product2Id"),),
    "Pricebook2": (("PricebookEntry", "Pricebook2Id"),),
    "PricebookEntry": (("OpportunityLineItem", "PricebookEntryId"),),
}


def _apply_rules(store, obj, phase, merged, values, existing):
    rule = RULES.get(obj.name)
    if rule is not None:
        rule(store, obj, phase, merged, values, existing)


def after_save(store, obj, record):
    """Side effects of a saved record on others (line items roll up into the opportunity)."""
    if obj.name == "OpportunityLineItem":
        _after_line_item_change(store, record["OpportunityId"])


def delete(store, obj, record):
    """Delete ``record`` with the records Salesforce deletes along with it."""
    store.delete(obj.name, record["Id"])
    for child, field_name in CASCADE.get(obj.name, ()):
        if (
            child not in store.schema.sobjects
            or field_name not in store.schema.sobjects[child].fields
        ):
            continue
        for child_id in store.find(child, field_name, record["Id"]):
            child_record = store.get(child, child_id)
            if child_record is not None:
                delete(store, store.schema.sobjects[child], child_record)
    after_save(store, obj, record)


def ensure_dict(body, what="sobject"):
    """The parsed body if it is a JSON object, else the deserializer's error."""
    if isinstance(body, dict):
        return body
    token, shown = _json_kind(body)
    raise json_parser_error(
        f"Cannot deserialize instance of {what} from {token} value {shown} "
        "or request may be missing a required field at [line:1, column:1]"
    )


__all__ = [
    "SalesforceError",
    "after_save",
    "coerce",
    "delete",
    "ensure_dict",
    "prepare",
    "same_key",
]
