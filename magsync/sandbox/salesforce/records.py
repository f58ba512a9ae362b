"""Record writes shared by the data APIs: the REST and Collections handlers (``api.py``) and the
Bulk API 2.0 jobs (``bulk.py``) create, update and find records to write the same way.

Both functions raise ``SalesforceError`` as Salesforce reports the problem.
"""

from magsync.sandbox.salesforce import ids, validation
from magsync.sandbox.salesforce.errors import bad_request


def save_record(store, obj, body, existing=None, raw=None):
    """Validate and store ``body`` (create when ``existing`` is None); returns the record.

    ``raw`` is the request's JSON text, for the positions in JSON_PARSER_ERROR messages.
    """
    with store.transaction():
        values = validation.prepare(store, obj, body, existing=existing, raw=raw)
        if existing is None:
            record = store.insert(obj.name, values)
        else:
            record = store.update(obj.name, existing["Id"], values)
        validation.after_save(store, obj, record)
        return record


def record_for_write(store, obj, record_id):
    """The live record ``record_id`` of ``obj`` for an update or delete of many records, or the
    per-record error Salesforce reports (MALFORMED_ID, ENTITY_IS_DELETED,
    INVALID_CROSS_REFERENCE_KEY)."""
    key = ids.normalize(record_id)
    if key is None:
        raise bad_request("MALFORMED_ID", f"malformed id {record_id}", [])
    record = store.get(obj.name, key) if key[:3] == obj.key_prefix else None
    if record is None:
        if store.is_deleted(obj.name, key):
            raise bad_request("ENTITY_IS_DELETED", "entity is deleted", [])
        raise bad_request("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
    return record
