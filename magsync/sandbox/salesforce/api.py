"""The REST data API under ``/services/data/vXX.X/``: routes, handlers and their answers.

Handlers take a ``Call`` (one request, or one Composite subrequest) and return an ``Answer`` or
raise ``SalesforceError`` (``calls.py``), and write records with ``records.py``. ``ROUTES`` maps
path shapes and methods to ``(kind, handler)``; the kind is the name under which the call is
counted against the daily allowance (a Composite request and a Collections request count once,
as in Salesforce).

Limits of this org: request bodies up to ``MAX_BODY`` bytes (larger ones get 413; Bulk API 2.0
uploads up to ``bulk.MAX_UPLOAD``, see ``max_body``), Collections up to 200 records, Composite
up to 25 subrequests of which at most 5 are Collections or queries, query pages of 2000 records
(``Sforce-Query-Options: batchSize=N``, 200..2000, to change), query cursors live 15 minutes
after their last use. Bulk API 2.0 ingest (``jobs/ingest``) lives in ``bulk.py``.
"""

import json
import re
import secrets
import threading
import time
from urllib.parse import parse_qs, unquote

from magsync.sandbox.salesforce import bulk, ids, soql, validation
from magsync.sandbox.salesforce.calls import Answer
from magsync.sandbox.salesforce.errors import (
    SalesforceError,
    bad_request,
    json_parser_error,
    not_found,
)
from magsync.sandbox.salesforce.records import record_for_write, save_record

MIN_VERSION = 46
MAX_VERSION = 64
MAX_BODY = 8 * 1024 * 1024
MAX_COLLECTION = 200
MAX_SUBREQUESTS = 25
MAX_HEAVY_SUBREQUESTS = 5
DEFAULT_BATCH = 2000
CURSOR_IDLE = 15 * 60
MAX_CURSORS = 50
EXTERNAL_ID_MISSING = "Provided external ID field does not exist or is not accessible: {}"
ROLLED_BACK = (
    "The transaction was rolled back since another operation in the same transaction failed."
)
RECORD_ROLLED_BACK = (
    "Record rolled back because not all records were valid and the request was using AllOrNone "
    "header"
)
_SEASONS = ("Summer", "Winter", "Spring")
_VERSION = re.compile(r"^v(\d{2})\.0$")
_REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
_REFERENCE_ID = re.compile(r"^[A-Za-z0-9_]+$")


def versions():
    """``GET /services/data/``: every version this org speaks."""
    out = []
    for number in range(MIN_VERSION, MAX_VERSION + 1):
        step = number - MIN_VERSION
        label = f"{_SEASONS[step % 3]} '{19 + (step + 2) // 3}"
        out.append({"label": label, "url": f"/services/data/v{number}.0", "version": f"{number}.0"})
    return out


def parse_version(segment):
    """``"58.0"`` for ``"v58.0"`` when the org speaks it, else None."""
    match = _VERSION.match(segment or "")
    if match and MIN_VERSION <= int(match.group(1)) <= MAX_VERSION:
        return f"{match.group(1)}.0"
    return None


# -- helpers ---------------------------------------------------------------------------------


def _object(call, name):
    obj = call.schema.get(name)
    if obj is None:
        raise not_found()
    return obj


def _record_url(version, sobject, record_id):
    return f"/services/data/v{version}/sobjects/{sobject}/{record_id}"


def _resolve(call, obj, record_id):
    """The live record ``record_id`` of ``obj`` or the 404 Salesforce answers."""
    key = ids.normalize(record_id)
    if key is None or key[:3] != obj.key_prefix:
        raise not_found(EXTERNAL_ID_MISSING.format(record_id))
    record = call.store.get(obj.name, key)
    if record is None:
        if call.store.is_deleted(obj.name, key):
            raise not_found_deleted()
        raise not_found()
    return record


def not_found_deleted():
    return SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted")


def _full_record(call, obj, record, fields=None):
    out = {"attributes": soql.attributes(obj.name, record["Id"], call.version)}
    for f in fields or obj.fields.values():
        out[f.name] = record.get(f.name)
    return out


def _fields_param(call, obj):
    names = call.param("fields")
    if not names:
        return None
    out = []
    for name in names.split(","):
        f = obj.field(name.strip())
        if f is None:
            raise bad_request("INVALID_FIELD", soql.NO_COLUMN.format(name.strip(), obj.name))
        out.append(f)
    return out


def _body_dict(call):
    return validation.ensure_dict(call.json())


def _save(call, obj, body, existing=None):
    return save_record(call.store, obj, body, existing=existing, raw=call.text)


def _saved(record_id, created=None):
    out = {"id": record_id, "success": True, "errors": []}
    if created is not None:
        out["created"] = created
    return out


# -- resources -------------------------------------------------------------------------------


def resources(call):
    base = f"/services/data/v{call.version}"
    names = ("sobjects", "query", "queryAll", "limits", "composite", "search", "tooling", "recent")
    return Answer(200, {name: f"{base}/{name}" for name in names})


def limits(call):
    used, limit = call.org.api_usage()
    batches_used, _ = call.org.bulk.usage()
    batches_max = call.org.bulk.daily_batches
    return Answer(
        200,
        {
            "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
            "DailyApiRequests": {"Max": limit, "Remaining": max(limit - used, 0)},
            "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
            "DailyBulkApiBatches": {
                "Max": batches_max,
                "Remaining": max(batches_max - batches_used, 0),
            },
            "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
            "FileStorageMB": {"Max": 1024, "Remaining": 1024},
            "HourlyTimeBasedWorkflow": {"Max": 1000, "Remaining": 1000},
            "SingleEmail": {"Max": 5000, "Remaining": 5000},
        },
    )


def describe_global(call):
    return Answer(
        200,
        {
            "encoding": "UTF-8",
            "maxBatchSize": MAX_COLLECTION,
            "sobjects": [obj.summary(call.version) for obj in call.schema.sobjects.values()],
        },
    )


def sobject_info(call, name):
    obj = _object(call, name)
    return Answer(200, {"objectDescribe": obj.summary(call.version), "recentItems": []})


def describe(call, name):
    return Answer(200, _object(call, name).describe(call.version))


# -- records ---------------------------------------------------------------------------------


def create(call, name):
    obj = _object(call, name)
    record = _save(call, obj, _body_dict(call))
    location = _record_url(call.version, obj.name, record["Id"])
    return Answer(201, _saved(record["Id"]), {"Location": location})


def read(call, name, record_id):
    obj = _object(call, name)
    record = _resolve(call, obj, record_id)
    return Answer(200, _full_record(call, obj, record, _fields_param(call, obj)))


def update(call, name, record_id):
    obj = _object(call, name)
    record = _resolve(call, obj, record_id)
    _save(call, obj, _body_dict(call), existing=record)
    return Answer(204)


def delete(call, name, record_id):
    obj = _object(call, name)
    record = _resolve(call, obj, record_id)
    with call.store.transaction():
        validation.delete(call.store, obj, record)
    return Answer(204)


def _external_field(obj, field_name):
    f = obj.field(field_name)
    if f is None:
        raise not_found(EXTERNAL_ID_MISSING.format(field_name))
    # Upsert matches on External ID fields and on standard fields with idLookup (Contact.Email,
    # Account.Name); a custom field that is only Unique does not qualify.
    if not (f.external_id or f.id_lookup):
        raise bad_request(
            "INVALID_FIELD", f"{f.name} is not an External ID or indexed field for {obj.name}"
        )
    return f


def _several(call, obj, matches):
    return Answer(300, [_record_url(call.version, obj.name, rid) for rid in matches])


def _by_external_id(call, name, field_name, value):
    """``(obj, record, None)`` for the one record with that external id, or
    ``(obj, None, answer)`` with the 300 listing several; NOT_FOUND when there is none."""
    obj = _object(call, name)
    f = _external_field(obj, field_name)
    matches = call.store.find(obj.name, f.name, value)
    if not matches:
        raise not_found()
    if len(matches) > 1:
        return obj, None, _several(call, obj, matches)
    return obj, call.store.get(obj.name, matches[0]), None


def read_by_external_id(call, name, field_name, value):
    obj, record, several = _by_external_id(call, name, field_name, value)
    if several:
        return several
    return Answer(200, _full_record(call, obj, record, _fields_param(call, obj)))


def delete_by_external_id(call, name, field_name, value):
    obj, record, several = _by_external_id(call, name, field_name, value)
    if several:
        return several
    with call.store.transaction():
        validation.delete(call.store, obj, record)
    return Answer(204)


def upsert(call, name, field_name, value):
    """PATCH by external id: 201 created, 200 updated (v46+), 300 when several records match."""
    obj = _object(call, name)
    f = _external_field(obj, field_name)
    body = _body_dict(call)
    for key in body:
        if key.lower() == "id":
            raise validation.id_in_body()
        if key.lower() == f.name.lower():
            raise bad_request(
                "INVALID_FIELD", f"The {f.name} field should not be specified in the sobject data."
            )
    with call.store.transaction():
        matches = call.store.find(obj.name, f.name, value)
        if len(matches) > 1:
            return _several(call, obj, matches)
        if matches:
            record = _save(call, obj, body, existing=call.store.get(obj.name, matches[0]))
            return Answer(200, _saved(record["Id"], created=False))
        if f.type == "id":
            raise not_found()
        record = _save(call, obj, {**body, f.name: value})
        location = _record_url(call.version, obj.name, record["Id"])
        return Answer(201, _saved(record["Id"], created=True), {"Location": location})


# -- queries ---------------------------------------------------------------------------------


class Cursors:
    """Open query cursors: the remaining records of a query, by locator (thread-safe)."""

    def __init__(self):
        self._open = {}
        self._lock = threading.Lock()

    def clear(self):
        with self._lock:
            self._open.clear()

    def open(self, records, batch):
        cursor = "01g" + "".join(
            secrets.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(15)
        )
        with self._lock:
            if len(self._open) >= MAX_CURSORS:
                oldest = min(self._open, key=lambda key: self._open[key][2])
                del self._open[oldest]
            self._open[cursor] = (records, batch, time.monotonic())
        return cursor

    def take(self, cursor):
        with self._lock:
            entry = self._open.get(cursor)
            if entry is None or time.monotonic() - entry[2] > CURSOR_IDLE:
                self._open.pop(cursor, None)
                return None
            self._open[cursor] = (entry[0], entry[1], time.monotonic())
            return entry[0], entry[1]


def _batch_size(call):
    options = call.headers.get("sforce-query-options") or ""
    match = re.search(r"batchSize\s*=\s*(\d+)", options, re.IGNORECASE)
    if not match:
        return DEFAULT_BATCH
    return min(max(int(match.group(1)), 200), DEFAULT_BATCH)


def _page(call, total, records, start, batch, cursor=None, resource="query"):
    chunk = records[start : start + batch]
    end = start + len(chunk)
    out = {"totalSize": total, "done": end >= len(records)}
    if not out["done"]:
        cursor = cursor or call.org.cursors.open(records, batch)
        out["nextRecordsUrl"] = f"/services/data/v{call.version}/{resource}/{cursor}-{end}"
    out["records"] = chunk
    return Answer(200, out)


def _run_query(call, include_deleted, resource):
    query = soql.parse(call.param("q"), call.schema)
    total, records = soql.execute(call.store, query, call.version, include_deleted)
    return _page(call, total, records, 0, _batch_size(call), resource=resource)


def query(call):
    return _run_query(call, False, "query")


def query_all(call):
    return _run_query(call, True, "queryAll")


def query_more(call, locator):
    cursor, _, position = locator.rpartition("-")
    taken = call.org.cursors.take(cursor) if position.isdigit() else None
    if taken is None:
        raise bad_request("INVALID_QUERY_LOCATOR", "invalid query locator")
    records, batch = taken
    resource = call.segments[0]
    return _page(call, len(records), records, int(position), batch, cursor, resource)


# -- sObject Collections -----------------------------------------------------------------------


def _collection(call, require_records=True):
    body = _body_dict(call)
    records = body.get("records")
    if not isinstance(records, list) or (require_records and not records):
        raise json_parser_error("Cannot deserialize instance of list from the value of 'records'")
    if len(records) > MAX_COLLECTION:
        raise bad_request(
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        )
    all_or_none = call.all_or_none or body.get("allOrNone") is True
    for record in records:
        attrs = record.get("attributes") if isinstance(record, dict) else None
        if not isinstance(attrs, dict) or not isinstance(attrs.get("type"), str):
            raise json_parser_error(
                "No SObject Type defined in the JSON: each record needs attributes.type"
            )
    return records, all_or_none


def _run_records(call, records, all_or_none, operation):
    """Apply ``operation(record) -> result`` to each record; per-record errors, all-or-none."""
    store = call.store
    results = []
    failed = False
    with store.transaction():
        start = store.savepoint()
        for record in records:
            mark = store.savepoint()
            try:
                results.append(operation(record))
            except SalesforceError as exc:
                store.rollback(mark)
                if exc.code == "JSON_PARSER_ERROR":
                    store.rollback(start)
                    raise
                failed = True
                results.append({"success": False, "errors": exc.record_errors()})
        if failed and all_or_none:
            store.rollback(start)
            rolled_back = {
                "success": False,
                "errors": [
                    {
                        "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                        "message": RECORD_ROLLED_BACK,
                        "fields": [],
                    }
                ],
            }
            results = [result if not result["success"] else dict(rolled_back) for result in results]
    return Answer(200, results)


def _record_object(call, record):
    """The object a Collections record names in ``attributes.type``; INVALID_TYPE if unknown."""
    obj = call.schema.get(record["attributes"]["type"])
    if obj is None:
        raise bad_request(
            "INVALID_TYPE", f"sObject type '{record['attributes']['type']}' is not supported."
        )
    return obj


def _record_body(record):
    return {key: value for key, value in record.items() if key != "attributes"}


def collections_create(call):
    records, all_or_none = _collection(call)

    def operation(record):
        obj = _record_object(call, record)
        body = _record_body(record)
        if any(key.lower() == "id" for key in body):
            raise bad_request(
                "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"]
            )
        return _saved(_save(call, obj, body)["Id"])

    return _run_records(call, records, all_or_none, operation)


def collections_update(call):
    records, all_or_none = _collection(call)

    def operation(record):
        obj = _record_object(call, record)
        body = _record_body(record)
        id_keys = [key for key in body if key.lower() == "id"]
        if not id_keys or not body[id_keys[0]]:
            raise bad_request("MISSING_ARGUMENT", "Id not specified in an update call", [])
        record_id = body.pop(id_keys[0])
        existing = record_for_write(call.store, obj, record_id)
        return _saved(_save(call, obj, body, existing=existing)["Id"])

    return _run_records(call, records, all_or_none, operation)


def collections_upsert(call, name, field_name):
    obj = _object(call, name)
    f = _external_field(obj, field_name)
    records, all_or_none = _collection(call)
    values = []
    for record in records:
        match = [v for k, v in record.items() if k.lower() == f.name.lower()]
        values.append(match[0] if match else None)
    seen = {}
    for value in values:
        if value is not None:
            key = validation.index_key(f, value)
            seen[key] = seen.get(key, 0) + 1

    def operation(record, value):
        if record["attributes"]["type"].lower() != obj.name.lower():
            raise bad_request(
                "INVALID_TYPE",
                f"sObject type '{record['attributes']['type']}' does not match {obj.name}",
                [],
            )
        body = _record_body(record)
        if any(key.lower() == "id" for key in body):
            raise validation.id_in_body()
        if value is None:
            raise bad_request("MISSING_ARGUMENT", f"{f.name} not specified", [f.name])
        if seen[validation.index_key(f, value)] > 1:
            raise bad_request(
                "DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {value}", [f.name]
            )
        matches = call.store.find(obj.name, f.name, value)
        if len(matches) > 1:
            raise bad_request(
                "DUPLICATE_EXTERNAL_ID",
                f"{f.name}: more than one record found for external id field: "
                f"[{', '.join(matches)}]",
                [f.name],
            )
        if matches:
            existing = call.store.get(obj.name, matches[0])
            body = {k: v for k, v in body.items() if k.lower() != f.name.lower()}
            return _saved(_save(call, obj, body, existing=existing)["Id"], created=False)
        return _saved(_save(call, obj, body)["Id"], created=True)

    pairs = list(zip(records, values, strict=True))
    return _run_records(call, pairs, all_or_none, lambda pair: operation(*pair))


def collections_delete(call):
    raw_ids = [value for value in (call.param("ids") or "").split(",") if value]
    if not raw_ids:
        raise bad_request("MISSING_ARGUMENT", "ids parameter is required")
    if len(raw_ids) > MAX_COLLECTION:
        raise bad_request(
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        )
    all_or_none = call.all_or_none or (call.param("allOrNone") or "").lower() == "true"

    def operation(record_id):
        key = ids.normalize(record_id)
        if key is None:
            raise bad_request("MALFORMED_ID", f"malformed id {record_id}", [])
        sobject, record = call.store.find_by_prefix(key)
        if record is None:
            if sobject and call.store.is_deleted(sobject, key):
                raise bad_request("ENTITY_IS_DELETED", "entity is deleted", [])
            raise bad_request("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        validation.delete(call.store, call.schema.sobjects[sobject], record)
        return _saved(record["Id"])

    answer = _run_records(call, raw_ids, all_or_none, operation)
    # Delete results name the id even when the delete failed.
    answer.body = [
        result if result["success"] else {"id": raw_id, **result}
        for raw_id, result in zip(raw_ids, answer.body, strict=True)
    ]
    return answer


def collections_read(call, name):
    obj = _object(call, name)
    if call.method == "POST":
        body = _body_dict(call)
        raw_ids, names = body.get("ids") or [], body.get("fields") or []
    else:
        raw_ids = [v for v in (call.param("ids") or "").split(",") if v]
        names = [v for v in (call.param("fields") or "").split(",") if v]
    if not raw_ids or not names:
        raise bad_request("MISSING_ARGUMENT", "ids and fields are required")
    fields = []
    for field_name in names:
        f = obj.field(field_name)
        if f is None:
            raise bad_request("INVALID_FIELD", soql.NO_COLUMN.format(field_name, obj.name))
        fields.append(f)
    out = []
    for raw_id in raw_ids:
        record = call.store.get(obj.name, raw_id) if ids.normalize(raw_id) else None
        out.append(_full_record(call, obj, record, fields) if record else None)
    return Answer(200, out)


# -- Composite -------------------------------------------------------------------------------


def _lookup(results, reference_id, path):
    """The value at ``path`` (``.id``, ``.records[0].Id``) of a previous subrequest's body."""
    value = results[reference_id]
    for step in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
        key, index = step
        if key:
            if not isinstance(value, dict) or key not in value:
                raise KeyError(key)
            value = value[key]
        else:
            if not isinstance(value, list) or int(index) >= len(value):
                raise KeyError(index)
            value = value[int(index)]
    return value


def _reference(match, results, failed):
    """The value a ``@{ref.path}`` reference points at, or PROCESSING_HALTED."""
    reference_id, path = match.group(1), match.group(2)
    try:
        if reference_id in failed:
            raise KeyError(reference_id)
        return _lookup(results, reference_id, path)
    except KeyError:
        raise bad_request(
            "PROCESSING_HALTED",
            f"Invalid reference specified. No value for {reference_id}{path} found in "
            f"{reference_id}. Provided referenceId ('{reference_id}') must refer to a successful "
            "subrequest earlier in this request.",
        ) from None


def _substitute(value, results, failed):
    """``value`` with every ``@{ref.path}`` replaced (a whole-string reference keeps the
    referenced value's JSON type)."""
    if isinstance(value, dict):
        return {key: _substitute(item, results, failed) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, results, failed) for item in value]
    if not isinstance(value, str) or "@{" not in value:
        return value
    whole = _REFERENCE.fullmatch(value)
    if whole:
        return _reference(whole, results, failed)

    def as_text(match):
        found = _reference(match, results, failed)
        return found if isinstance(found, str) else json.dumps(found)

    return _REFERENCE.sub(as_text, value)


def _has_failed_record(body):
    return isinstance(body, list) and any(
        isinstance(item, dict) and item.get("success") is False for item in body
    )


def _check_subrequests(subrequests):
    if not isinstance(subrequests, list) or not subrequests:
        raise json_parser_error("compositeRequest must be a non-empty list of subrequests")
    if len(subrequests) > MAX_SUBREQUESTS:
        raise bad_request(
            "LIMIT_EXCEEDED", f"Composite requests can have at most {MAX_SUBREQUESTS} subrequests"
        )
    seen = set()
    heavy = 0
    for sub in subrequests:
        if not isinstance(sub, dict):
            raise json_parser_error("Each composite subrequest must be a JSON object")
        method, url, reference_id = sub.get("method"), sub.get("url"), sub.get("referenceId")
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            raise json_parser_error(f"Invalid method for subrequest: {method}")
        if not isinstance(url, str) or not url.startswith("/services/data/"):
            raise json_parser_error(f"Invalid url for subrequest: {url}")
        if not isinstance(reference_id, str) or not _REFERENCE_ID.match(reference_id):
            raise json_parser_error(
                "referenceId must contain only letters, numbers and underscores ('_'): "
                + repr(reference_id)
            )
        if reference_id in seen:
            raise json_parser_error(
                f"Duplicate referenceId provided in the request: {reference_id}"
            )
        seen.add(reference_id)
        headers = sub.get("httpHeaders") or {}
        if any(h.lower() in ("accept", "authorization", "content-type") for h in headers):
            raise json_parser_error(
                "Accept, Authorization and Content-Type can't be set on subrequests"
            )
        path = url.split("?", 1)[0]
        if "/composite/sobjects" in path or "/query" in path or "/queryAll" in path:
            heavy += 1
    if heavy > MAX_HEAVY_SUBREQUESTS:
        raise bad_request(
            "LIMIT_EXCEEDED",
            f"Composite requests can have at most {MAX_HEAVY_SUBREQUESTS} sObject Collections "
            "or query subrequests",
        )


def composite(call):
    """POST /composite: subrequests in order with ``@{ref.field}`` references; ``allOrNone``
    rolls everything back when one fails and reports PROCESSING_HALTED for the others."""
    body = _body_dict(call)
    subrequests = body.get("compositeRequest")
    _check_subrequests(subrequests)
    all_or_none = body.get("allOrNone") is True
    store = call.store
    results, failed, out = {}, set(), []
    with store.transaction():
        start = store.savepoint()
        for sub in subrequests:
            reference_id = sub["referenceId"]
            mark = store.savepoint()
            try:
                url = _substitute(sub["url"], results, failed)
                sub_body = _substitute(sub.get("body"), results, failed)
                answer = call.org.dispatch_subrequest(
                    call, sub["method"], url, sub_body, sub.get("httpHeaders") or {}, all_or_none
                )
            except SalesforceError as exc:
                answer = Answer(exc.status, exc.body(), dict(exc.headers))
            if answer.status >= 400:
                store.rollback(mark)
                failed.add(reference_id)
            else:
                results[reference_id] = answer.body
                # Under allOrNone a Collections subrequest with a failed record fails the whole
                # Composite request, although the subrequest itself answers 200.
                if all_or_none and _has_failed_record(answer.body):
                    failed.add(reference_id)
            out.append(
                {
                    "body": answer.body,
                    "httpHeaders": {
                        k: v for k, v in answer.headers.items() if k != "Sforce-Limit-Info"
                    },
                    "httpStatusCode": answer.status,
                    "referenceId": reference_id,
                }
            )
            if failed and all_or_none:
                break
        if failed and all_or_none:
            store.rollback(start)
            halted = [{"errorCode": "PROCESSING_HALTED", "message": ROLLED_BACK}]
            done = {item["referenceId"] for item in out}
            out = [
                item
                if item["referenceId"] in failed
                else {**item, "body": halted, "httpHeaders": {}, "httpStatusCode": 400}
                for item in out
            ]
            out += [
                {
                    "body": halted,
                    "httpHeaders": {},
                    "httpStatusCode": 400,
                    "referenceId": sub["referenceId"],
                }
                for sub in subrequests
                if sub["referenceId"] not in done
            ]
    return Answer(200, {"compositeResponse": out})


def composite_resources(call):
    base = f"/services/data/v{call.version}/composite"
    return Answer(
        200, {"sobjects": f"{base}/sobjects", "batch": f"{base}/batch", "tree": f"{base}/tree"}
    )


# -- routing ---------------------------------------------------------------------------------

# Path shapes after /services/data/vXX.X/ ("*" is any one segment), first match wins.
ROUTES = [
    ((), {"GET": ("resources", resources)}),
    (("sobjects",), {"GET": ("describeGlobal", describe_global)}),
    (("sobjects", "*"), {"GET": ("sobject", sobject_info), "POST": ("create", create)}),
    (("sobjects", "*", "describe"), {"GET": ("describe", describe)}),
    (
        ("sobjects", "*", "*"),
        {"GET": ("read", read), "PATCH": ("update", update), "DELETE": ("delete", delete)},
    ),
    (
        ("sobjects", "*", "*", "*"),
        {
            "GET": ("read", read_by_external_id),
            "PATCH": ("upsert", upsert),
            "DELETE": ("delete", delete_by_external_id),
        },
    ),
    (("query",), {"GET": ("query", query)}),
    (("query", "*"), {"GET": ("queryMore", query_more)}),
    (("queryAll",), {"GET": ("queryAll", query_all)}),
    (("queryAll", "*"), {"GET": ("queryMore", query_more)}),
    (("limits",), {"GET": ("limits", limits)}),
    (("composite",), {"GET": ("composite", composite_resources), "POST": ("composite", composite)}),
    (
        ("composite", "sobjects"),
        {
            "POST": ("collectionsCreate", collections_create),
            "PATCH": ("collectionsUpdate", collections_update),
            "DELETE": ("collectionsDelete", collections_delete),
        },
    ),
    (
        ("composite", "sobjects", "*"),
        {
            "GET": ("collectionsRead", collections_read),
            "POST": ("collectionsRead", collections_read),
        },
    ),
    (("composite", "sobjects", "*", "*"), {"PATCH": ("collectionsUpsert", collections_upsert)}),
    (
        ("jobs", "ingest"),
        {"GET": ("ingestList", bulk.list_jobs), "POST": ("ingestCreate", bulk.create)},
    ),
    (
        ("jobs", "ingest", "*"),
        {
            "GET": ("ingestInfo", bulk.info),
            "PATCH": ("ingestState", bulk.set_state),
            "DELETE": ("ingestDelete", bulk.delete),
        },
    ),
    (("jobs", "ingest", "*", "batches"), {"PUT": ("ingestUpload", bulk.upload)}),
    (("jobs", "ingest", "*", "*"), {"GET": ("ingestResults", bulk.results)}),
]


def route(segments, method):
    """``(kind, handler, args)`` for a path after the version, or raise 404 / 405."""
    for shape, methods in ROUTES:
        if len(shape) != len(segments):
            continue
        if all(part == "*" or part == seg for part, seg in zip(shape, segments, strict=True)):
            if method not in methods:
                allowed = ",".join([*methods, "HEAD"] if "GET" in methods else methods)
                raise SalesforceError(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"HTTP Method '{method}' not allowed. Allowed are {allowed}",
                )
            kind, handler = methods[method]
            args = [seg for part, seg in zip(shape, segments, strict=True) if part == "*"]
            return kind, handler, args
    raise not_found()


def max_body(method, path):
    """The largest request body this org reads for ``method`` on ``path``: a Bulk API 2.0 upload
    may carry ``bulk.MAX_UPLOAD`` bytes, anything else ``MAX_BODY``."""
    segments = split_path(path)
    if (
        method == "PUT"
        and len(segments) == 7
        and segments[3:5] + segments[6:]
        == [
            "jobs",
            "ingest",
            "batches",
        ]
    ):
        return bulk.MAX_UPLOAD
    return MAX_BODY


def split_path(path):
    """Decoded path segments (an encoded ``/`` stays inside its segment); no trailing slash."""
    return [unquote(part) for part in path.strip("/").split("/")] if path.strip("/") else []


def query_params(query):
    return parse_qs(query, keep_blank_values=True)
