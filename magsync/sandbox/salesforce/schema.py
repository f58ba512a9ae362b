"""The org's schema: objects and fields loaded from data (``schema.json`` or a variant).

Schema data format::

    {"corporateCurrency": "USD", "currencies": ["USD", ...],
     "sobjects": {"Opportunity": {"label", "labelPlural", "keyPrefix",
                                  "owned": bool,             # adds OwnerId
                                  "currency": "own" | "fixed" | "derived" | absent,
                                  "stages": [...],           # Opportunity only, see below
                                  "fields": {"Name": {"type", "label", "length", ...}}}}}

Field keys: ``type`` (string, textarea, email, phone, url, picklist, boolean, currency, double,
percent, int, date, datetime, reference), ``label``, ``length`` (text types), ``precision`` /
``scale`` (numbers), ``digits`` (int), ``required`` (not nillable and not defaulted on create),
``externalId``, ``unique``, ``idLookup``, ``caseSensitive``, ``createable`` / ``updateable``
(default true), ``picklist`` (values), ``restricted``, ``defaultValue``, ``referenceTo``,
``relationshipName``, ``nameField``. Fields whose name ends in ``__c`` are custom.

System fields (Id, IsDeleted, CreatedDate, CreatedById, LastModifiedDate, LastModifiedById,
SystemModstamp, OwnerId when ``owned``, CurrencyIsoCode when ``currency`` is set) are added by
the loader. ``currency``: ``own`` (createable and updateable), ``fixed`` (createable only),
``derived`` (copied from the parent record, e.g. an OpportunityLineItem's opportunity).

Opportunity ``stages`` carry what Salesforce keeps on OpportunityStage:
``{"value", "probability", "forecastCategory", "closed", "won"}``. Any object may carry
``validationRules`` (see ``ValidationRule``): an org's custom rules, which refuse a save with
FIELD_CUSTOM_VALIDATION_EXCEPTION.
"""

import copy
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

TEXT_TYPES = frozenset({"string", "textarea", "email", "phone", "url", "picklist", "id"})
NUMBER_TYPES = frozenset({"currency", "double", "percent", "int"})

# SOAP types as describe reports them, by field type.
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "textarea": "xsd:string",
    "email": "xsd:string",
    "phone": "xsd:string",
    "url": "xsd:string",
    "picklist": "xsd:string",
    "boolean": "xsd:boolean",
    "currency": "xsd:double",
    "double": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}


def packaged_schema():
    """A fresh copy of the packaged schema data, for building variant orgs."""
    text = resources.files("magsync.sandbox.salesforce").joinpath("schema.json").read_text()
    return json.loads(text)


@dataclass
class Field:
    """One field of an sObject, with describe's attributes."""

    name: str
    type: str
    label: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    digits: int = 0
    nillable: bool = True
    required: bool = False
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    id_lookup: bool = False
    case_sensitive: bool = False
    picklist: tuple = ()
    restricted: bool = False
    default: object = None
    reference_to: tuple = ()
    relationship_name: str | None = None
    name_field: bool = False
    custom: bool = False
    system: bool = False

    @property
    def indexed(self):
        """True when upsert and lookups can match on this field."""
        return self.external_id or self.unique or self.id_lookup

    def describe(self):
        """The field as ``GET /sobjects/{Type}/describe`` reports it."""
        text = self.type in TEXT_TYPES
        return {
            "aggregatable": self.type not in ("textarea",),
            "autoNumber": False,
            "byteLength": self.length * 3 if text else (18 if self.type == "reference" else 0),
            "calculated": not self.createable and not self.updateable and not self.system,
            "caseSensitive": self.case_sensitive,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": self.default if self.type != "picklist" else None,
            "defaultedOnCreate": self.default is not None or self.type == "boolean" or self.system,
            "digits": self.digits,
            "externalId": self.external_id,
            "filterable": self.type != "textarea" or self.length <= 255,
            "groupable": self.type not in ("textarea", "currency", "double", "percent"),
            "idLookup": self.id_lookup,
            "label": self.label,
            "length": self.length if text else (18 if self.type == "reference" else 0),
            "name": self.name,
            "nameField": self.name_field,
            "nillable": self.nillable,
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": value == self.default,
                    "label": value,
                    "validFor": None,
                    "value": value,
                }
                for value in self.picklist
            ],
            "precision": self.precision,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "restrictedPicklist": self.restricted,
            "scale": self.scale,
            "soapType": _SOAP_TYPES[self.type],
            "sortable": self.type != "textarea" or self.length <= 255,
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
        }


@dataclass
class SObject:
    """One object type: its fields by exact name and by lower-cased name (API names are
    case-insensitive on the wire, but Salesforce answers with the canonical spelling)."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: dict
    currency: str | None = None
    stages: dict = field(default_factory=dict)
    validation_rules: tuple = ()

    def __post_init__(self):
        self.by_lower = {name.lower(): f for name, f in self.fields.items()}
        self.relationships = {
            f.relationship_name.lower(): f
            for f in self.fields.values()
            if f.type == "reference" and f.relationship_name
        }

    def field(self, name):
        """The field called ``name`` (any case), or None."""
        return self.by_lower.get(name.lower()) if isinstance(name, str) else None

    def urls(self, version):
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "compactLayouts": f"{base}/describe/compactLayouts",
            "rowTemplate": f"{base}/{{ID}}",
            "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
            "describe": f"{base}/describe",
            "sobject": base,
        }

    def summary(self, version):
        """The object as ``GET /sobjects`` lists it."""
        return {
            "activateable": False,
            "createable": True,
            "custom": self.name.endswith("__c"),
            "customSetting": False,
            "deletable": True,
            "deprecatedAndHidden": False,
            "feedEnabled": False,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "layoutable": True,
            "mergeable": self.name in ("Account", "Contact", "Lead"),
            "name": self.name,
            "queryable": True,
            "replicateable": True,
            "retrieveable": True,
            "searchable": True,
            "triggerable": True,
            "undeletable": True,
            "updateable": True,
            "urls": self.urls(version),
        }

    def describe(self, version):
        """The object as ``GET /sobjects/{Type}/describe`` reports it."""
        out = self.summary(version)
        out["fields"] = [f.describe() for f in self.fields.values()]
        out["childRelationships"] = []
        out["recordTypeInfos"] = []
        return out


_RULE_OPERATORS = {
    "gt": lambda value, limit: value > limit,
    "ge": lambda value, limit: value >= limit,
    "lt": lambda value, limit: value < limit,
    "le": lambda value, limit: value <= limit,
    "eq": lambda value, limit: value == limit,
    "ne": lambda value, limit: value != limit,
    "matches": lambda value, limit: re.search(limit, str(value)) is not None,
}


@dataclass(frozen=True)
class ValidationRule:
    """A custom validation rule: the record is refused when ``field operator value`` holds.

    In the schema: ``"validationRules": [{"name": "Large_orders_need_approval", "field":
    "Amount", "operator": "gt", "value": 250000, "message": "...", "errorDisplayField":
    "Amount"}]`` (operators: gt, ge, lt, le, eq, ne, matches). A refused save answers 400
    ``FIELD_CUSTOM_VALIDATION_EXCEPTION`` with the rule's message, as an org's rules do.
    """

    name: str
    field: str
    operator: str
    value: object
    message: str
    error_field: str | None = None

    @classmethod
    def load(cls, sobject, spec, fields):
        if spec["field"] not in fields or spec["operator"] not in _RULE_OPERATORS:
            raise ValueError(f"{sobject}: validation rule {spec.get('name')!r} is not valid")
        return cls(
            name=spec["name"],
            field=spec["field"],
            operator=spec["operator"],
            value=spec["value"],
            message=spec["message"],
            error_field=spec.get("errorDisplayField"),
        )

    def refuses(self, record):
        value = record.get(self.field)
        return value is not None and _RULE_OPERATORS[self.operator](value, self.value)


class Schema:
    """All objects of the org, looked up by name (any case) or by key prefix."""

    def __init__(self, data):
        self.data = data
        self.corporate_currency = data.get("corporateCurrency", "USD")
        self.currencies = tuple(data.get("currencies") or ())
        self.sobjects = {}
        for name, spec in data["sobjects"].items():
            self.sobjects[name] = self._load_object(name, spec)
        self.by_lower = {name.lower(): obj for name, obj in self.sobjects.items()}
        self.by_prefix = {obj.key_prefix: obj for obj in self.sobjects.values()}

    def get(self, name):
        """The object called ``name`` (any case), or None."""
        return self.by_lower.get(name.lower()) if isinstance(name, str) else None

    def _load_object(self, name, spec):
        fields = {"Id": Field("Id", "id", f"{spec['label']} ID", length=18, nillable=False)}
        fields["Id"].createable = fields["Id"].updateable = False
        fields["Id"].id_lookup = True
        fields["Id"].system = True
        if spec.get("owned"):
            fields["OwnerId"] = Field(
                "OwnerId",
                "reference",
                "Owner ID",
                nillable=False,
                reference_to=("User",),
                relationship_name="Owner",
                system=True,
            )
        for field_name, fspec in spec["fields"].items():
            fields[field_name] = self._load_field(field_name, fspec)
        mode = spec.get("currency")
        if mode and self.currencies:
            fields["CurrencyIsoCode"] = Field(
                "CurrencyIsoCode",
                "picklist",
                f"{spec['label']} Currency",
                length=3,
                picklist=self.currencies,
                restricted=True,
                default=self.corporate_currency,
                createable=mode in ("own", "fixed"),
                updateable=mode == "own",
                system=True,
            )
        fields["IsDeleted"] = Field("IsDeleted", "boolean", "Deleted", nillable=False)
        for field_name, label in (
            ("CreatedDate", "Created Date"),
            ("LastModifiedDate", "Last Modified Date"),
            ("SystemModstamp", "System Modstamp"),
        ):
            fields[field_name] = Field(field_name, "datetime", label, nillable=False)
        for field_name, label, rel in (
            ("CreatedById", "Created By ID", "CreatedBy"),
            ("LastModifiedById", "Last Modified By ID", "LastModifiedBy"),
        ):
            fields[field_name] = Field(
                field_name,
                "reference",
                label,
                nillable=False,
                reference_to=("User",),
                relationship_name=rel,
            )
        for field_name in (
            "IsDeleted",
            "CreatedDate",
            "LastModifiedDate",
            "SystemModstamp",
            "CreatedById",
            "LastModifiedById",
        ):
            fields[field_name].createable = fields[field_name].updateable = False
            fields[field_name].system = True
        stages = {stage["value"]: stage for stage in spec.get("stages", ())}
        rules = tuple(
            ValidationRule.load(name, rule, fields) for rule in spec.get("validationRules", ())
        )
        return SObject(
            name=name,
            label=spec["label"],
            label_plural=spec.get("labelPlural", spec["label"]),
            key_prefix=spec["keyPrefix"],
            fields=fields,
            currency=mode,
            stages=stages,
            validation_rules=rules,
        )

    @staticmethod
    def _load_field(name, spec):
        kind = spec["type"]
        required = bool(spec.get("required"))
        default = spec.get("defaultValue")
        if kind == "boolean" and default is None:
            default = False
        out = Field(
            name=name,
            type=kind,
            label=spec.get("label", name),
            length=spec.get("length", 255 if kind == "picklist" else 0),
            precision=spec.get("precision", 0),
            scale=spec.get("scale", 0),
            digits=spec.get("digits", 0),
            nillable=not required and kind != "boolean",
            required=required and default is None,
            createable=spec.get("createable", True),
            updateable=spec.get("updateable", True),
            external_id=bool(spec.get("externalId")),
            unique=bool(spec.get("unique")),
            id_lookup=bool(spec.get("idLookup") or spec.get("externalId")),
            case_sensitive=bool(spec.get("caseSensitive")),
            picklist=tuple(spec.get("picklist", ())),
            restricted=bool(spec.get("restricted")),
            default=default,
            reference_to=tuple(spec.get("referenceTo", ())),
            relationship_name=spec.get("relationshipName"),
            name_field=bool(spec.get("nameField")),
            custom=name.endswith("__c"),
        )
        return out


def load(schema=None):
    """The org schema from ``None`` (packaged), a path to a JSON file, or a dict (copied)."""
    if schema is None:
        data = packaged_schema()
    elif isinstance(schema, dict):
        data = copy.deepcopy(schema)
    else:
        data = json.loads(Path(schema).read_text())
    return Schema(data)
