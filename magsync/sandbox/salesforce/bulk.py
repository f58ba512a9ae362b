"""Bulk API 2.0 ingest under ``/services/data/vXX.X/jobs/ingest``: jobs, their CSV data, their
processing in the background with the org's validation, and their results.

Routes (each request is one API call, counted like any REST request)::

    POST   jobs/ingest                          create: {"object", "operation": insert | update |
                                                upsert | delete, "externalIdFieldName" (upsert),
                                                "contentType": "CSV", "lineEnding": LF | CRLF,
                                                "columnDelimiter": COMMA | TAB | ...} -> the job
    GET    jobs/ingest[?queryLocator=...]       every job, 1000 a page (done, nextRecordsUrl)
    GET    jobs/ingest/{id}                     the job with numberRecordsProcessed / Failed
    PATCH  jobs/ingest/{id}                     {"state": "UploadComplete" | "Aborted"} -> the job
    DELETE jobs/ingest/{id}                     204 (UploadComplete, JobComplete, Aborted, Failed)
    PUT    jobs/ingest/{id}/batches             text/csv, up to MAX_UPLOAD bytes, while Open -> 201
    GET    jobs/ingest/{id}/successfulResults   "sf__Id","sf__Created",<the uploaded fields>
    GET    jobs/ingest/{id}/failedResults       "sf__Id","sf__Error",<the uploaded fields>
    GET    jobs/ingest/{id}/unprocessedrecords  <the uploaded fields> (any case of the last segment)

A job goes Open -> UploadComplete -> InProgress -> JobComplete or Failed, and may be Aborted
until it is complete. A closed job waits ``latency`` seconds as UploadComplete (Salesforce's
queue) and ``latency`` more as InProgress before its records are written, on a thread of its
own. Records are read as ``bulk_csv`` describes, split into internal batches of 10,000, and
written 200 at a time (each chunk holds the org's store, so REST requests interleave). Each
record is validated exactly as the REST API validates it (``validation.prepare``): an empty
value leaves a field alone, ``#N/A`` sets it to null; an upsert matches on the job's
``externalIdFieldName`` like the REST upsert, and every record of a job that shares an external
id with another fails with DUPLICATE_EXTERNAL_ID (an upsert on ``Id`` inserts the records
without one). An update or delete names its records by ``Id``. A value that does not read as its
field's type fails the record with INVALID_FIELD (``Failed to deserialize field at col N``). A
record's error reads ``ERRORCODE:message:Field1 Field2 --`` (``ERRORCODE:message:--`` without
fields); a failed record's ``sf__Id`` is the record it was about, when there was one.

Results can be read in any state: what has been processed so far, and as unprocessed records
the rest (the upload as it came while the job was never read). A delete of an UploadComplete job
stops its processing. ``hardDelete`` is refused (FEATURENOTENABLED), as for a user without the
Bulk API Hard Delete permission.

The whole job fails (state Failed, ``errorMessage``, nothing written) when its data cannot be
read (another line ending than the job's, a quote that never closes, no records), names a field
the object does not have, or is a delete whose header is not ``Id`` alone. Before each internal
batch the rolling-24-hour allocations are checked (``daily_batches``, 15,000 batches, and
``daily_records``, 150,000,000 records, by default): past either, the job fails with
``ExceededQuota`` and the rest of its records stay unprocessed.

Errors as Salesforce answers them: a state change the job's state does not allow, 400
INVALIDJOBSTATE (``Closing already Completed Job not allowed``); closing a job that was given
data twice, 400 INVALIDJOB (``Found multipe contents for job``, sic); data for a job that is not
Open, 409 INVALIDJOBSTATE; an unknown job, 404 NOT_FOUND.
"""

import itertools
import logging
import re
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from magsync.sandbox.salesforce import bulk_csv, ids, validation
from magsync.sandbox.salesforce.calls import Answer
from magsync.sandbox.salesforce.errors import SalesforceError, bad_request, not_found
from magsync.sandbox.salesforce.records import record_for_write, save_record
from magsync.sandbox.salesforce.store import index_key, timestamp

log = logging.getLogger("magsync.sandbox.salesforce")

MAX_UPLOAD = 100 * 1024 * 1024
BATCH_RECORDS = 10_000
CHUNK_RECORDS = 200
LIST_PAGE = 1000
WINDOW = 24 * 3600.0
DAILY_BATCHES = 15_000
DAILY_RECORDS = 150_000_000
OPERATIONS = ("insert", "update", "upsert", "delete")
TERMINAL = ("JobComplete", "Failed", "Aborted")
DELETABLE = ("UploadComplete", "JobComplete", "Aborted", "Failed")
CSV_TYPE = "text/csv"
RESULTS = {
    "successfulresults": "successful",
    "failedresults": "failed",
    "unprocessedrecords": "unprocessed",
}
# How the state a job is already in reads in "Closing already ... Job not allowed".
_STATE_WORDS = {"JobComplete": "Completed"}
_XSD = {
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}
# Bulk API takes a date with a zone designator (1940-06-07Z); the date is what is stored.
_ZONED_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:Z|[+-]\d{2}:?\d{2})$")


@dataclass
class Job:
    """One ingest job; its state and results change under ``Jobs``' lock."""

    id: str
    operation: str
    object: str
    external_id_field: str | None
    line_ending: str
    delimiter: str
    api_version: str
    created_by: str
    created: str
    modstamp: str
    state: str = "Open"
    uploads: list = field(default_factory=list)
    header: list | None = None
    records: list | None = None
    outcomes: list = field(default_factory=list)
    failed_count: int = 0
    error_message: str | None = None
    processing_ms: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)

    def summary(self):
        """The job as create, close and abort answer it (and as the job list shows it)."""
        out = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": self.created,
            "systemModstamp": self.modstamp,
            "state": self.state,
        }
        if self.external_id_field:
            out["externalIdFieldName"] = self.external_id_field
        out.update(
            {
                "concurrencyMode": "Parallel",
                "contentType": "CSV",
                "apiVersion": float(self.api_version),
                "contentUrl": f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches",
                "lineEnding": self.line_ending,
                "columnDelimiter": self.delimiter,
            }
        )
        return out

    def info(self):
        """The job as ``GET jobs/ingest/{id}`` answers it."""
        out = self.summary()
        out.update(
            {
                "jobType": "V2Ingest",
                "retries": 0,
                "numberRecordsProcessed": len(self.outcomes),
                "numberRecordsFailed": self.failed_count,
                "totalProcessingTime": self.processing_ms,
                "apiActiveProcessingTime": self.processing_ms,
                "apexProcessingTime": 0,
            }
        )
        if self.error_message:
            out["errorMessage"] = self.error_message
        return out

    @property
    def data(self):
        return b"".join(self.uploads)


@dataclass
class _Success:
    id: str
    created: bool


@dataclass
class _Failure:
    id: str
    error: str


def error_text(exc):
    """A record's ``sf__Error``: ``CODE:message:Field1 Field2 --`` or ``CODE:message:--``."""
    code, message, fields = exc.errors[0]
    names = " ".join(fields or [])
    return f"{code}:{message}:{names} --" if names else f"{code}:{message}:--"


class _Plan:
    """How the uploaded header maps onto the job's object; raises ``CsvError`` (the job's
    ``errorMessage``) when it cannot."""

    def __init__(self, job, obj, header):
        self.job = job
        self.obj = obj
        self.fields = []
        names = []
        for name in header:
            f = obj.field(name)
            if f is None:
                raise bulk_csv.CsvError(f"InvalidBatch : Field name not found : {name}")
            if f.name in names:
                raise bulk_csv.CsvError(f"InvalidBatch : Duplicate field name : {name}")
            self.fields.append(f)
            names.append(f.name)
        if job.operation == "delete" and names != ["Id"]:
            raise bulk_csv.CsvError("InvalidBatch : The 'delete' batch must contain only ids")
        self.key = None
        if job.operation == "upsert":
            self.key = obj.field(job.external_id_field)
            if self.key.name not in names:
                raise bulk_csv.CsvError(
                    f"InvalidBatch : Field name not found : {job.external_id_field}"
                )
        self.key_counts = Counter()

    def count_keys(self, records):
        """Count the external ids of an upsert, to refuse those that come more than once."""
        if self.key is None or self.key.type == "id":
            return
        column = [f.name for f in self.fields].index(self.key.name)
        for record in records:
            if len(record.values) > column:
                value = record.values[column]
                if value not in ("", "#N/A"):
                    self.key_counts[index_key(self.key, value)] += 1

    def body(self, record):
        """The record's fields as a REST body: empty values left out, ``#N/A`` as null."""
        if record.error:
            raise bad_request("ClientInputError", record.error, [])
        if len(record.values) != len(self.fields):
            raise bad_request(
                "ClientInputError",
                f"The record has {len(record.values)} values but the header names "
                f"{len(self.fields)} fields",
                [],
            )
        body = {}
        for column, (f, value) in enumerate(zip(self.fields, record.values, strict=True)):
            if value == "":
                continue
            body[f.name] = None if value == "#N/A" else _checked(column, f, value)
        return body


def _checked(column, f, value):
    """``value`` for field ``f`` if it reads as the field's type; the Bulk API error if not."""
    if f.type == "date":
        zoned = _ZONED_DATE.match(value)
        value = zoned.group(1) if zoned else value
    try:
        validation.coerce(f, value)
    except SalesforceError:
        raise bad_request(
            "INVALID_FIELD",
            f"Failed to deserialize field at col {column + 1}. Due to, '{value}' is not a valid "
            f"value for the type {_XSD.get(f.type, 'xsd:string')}",
            [f.name],
        ) from None
    return value


class _Writer:
    """Applies one job's records to the store by its operation; ``target`` is the id of the
    record a failed record was about, when known (``sf__Id`` of failed results)."""

    def __init__(self, store, plan):
        self.store = store
        self.plan = plan
        self.obj = plan.obj
        self.target = ""

    def apply(self, record):
        """``_Success`` or ``_Failure`` for one record (its changes undone when it fails)."""
        self.target = ""
        mark = self.store.savepoint()
        try:
            body = self.plan.body(record)
            record_id, created = getattr(self, self.plan.job.operation)(body)
            return _Success(record_id, created)
        except SalesforceError as exc:
            self.store.rollback(mark)
            return _Failure(self.target, error_text(exc))

    def _save(self, body, existing=None):
        return save_record(self.store, self.obj, body, existing=existing)["Id"]

    def _existing(self, record_id):
        existing = record_for_write(self.store, self.obj, record_id)
        self.target = existing["Id"]
        return existing

    def insert(self, body):
        if "Id" in body:
            raise bad_request(
                "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"]
            )
        return self._save(body), True

    def update(self, body):
        record_id = body.pop("Id", None)
        if not record_id:
            raise bad_request("MISSING_ARGUMENT", "Id not specified in an update call", [])
        return self._save(body, self._existing(record_id)), False

    def delete(self, body):
        record_id = body.get("Id")
        if not record_id:
            raise bad_request("MISSING_ARGUMENT", "Id not specified in a delete call", [])
        existing = self._existing(record_id)
        validation.delete(self.store, self.obj, existing)
        return existing["Id"], False

    def upsert(self, body):
        key = self.plan.key
        if key.type == "id":
            record_id = body.pop("Id", None)
            if not record_id:
                return self.insert(body)
            return self._save(body, self._existing(record_id)), False
        value = body.get(key.name)
        if value is None:
            raise bad_request("MISSING_ARGUMENT", f"{key.name} not specified", [key.name])
        if "Id" in body:
            raise validation.id_in_body()
        if self.plan.key_counts[index_key(key, value)] > 1:
            raise bad_request(
                "DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {value}", [key.name]
            )
        matches = self.store.find(self.obj.name, key.name, value)
        if len(matches) > 1:
            raise bad_request(
                "DUPLICATE_EXTERNAL_ID",
                f"{key.name}: more than one record found for external id field: "
                f"[{', '.join(matches)}]",
                [key.name],
            )
        if not matches:
            return self._save(body), True
        existing = self.store.get(self.obj.name, matches[0])
        self.target = existing["Id"]
        rest = {name: item for name, item in body.items() if name != key.name}
        return self._save(rest, existing), False


class Jobs:
    """The org's ingest jobs, their processing threads and the rolling-24-hour allocations.

    ``latency`` is in seconds; ``clock`` (monotonic seconds) dates the allocations' use.
    """

    def __init__(
        self,
        org,
        latency=0.0,
        daily_batches=DAILY_BATCHES,
        daily_records=DAILY_RECORDS,
        clock=time.monotonic,
    ):
        self._org = org
        self._clock = clock
        self._lock = threading.RLock()
        self._jobs = {}
        self._threads = set()
        self._used = deque()
        # Serials start at a random point, as the store's do.
        self._serial = itertools.count(secrets.randbelow(62**6) + 62**5)
        self.latency = float(latency)
        self.daily_batches = int(daily_batches)
        self.daily_records = int(daily_records)

    # -- control -------------------------------------------------------------------------------

    def configure(self, latency=None, daily_batches=None, daily_records=None):
        """Change the latency or the allocations; returns all three."""
        with self._lock:
            if latency is not None:
                if float(latency) < 0:
                    raise ValueError("the bulk latency must not be negative")
                self.latency = float(latency)
            if daily_batches is not None:
                self.daily_batches = int(daily_batches)
            if daily_records is not None:
                self.daily_records = int(daily_records)
            return {
                "latency": self.latency,
                "daily_batches": self.daily_batches,
                "daily_records": self.daily_records,
            }

    def usage(self):
        """``(batches, records)`` processed in the last 24 hours."""
        with self._lock:
            self._expire()
            return sum(b for _, b, _ in self._used), sum(r for _, _, r in self._used)

    def stats(self):
        batches, records = self.usage()
        with self._lock:
            states = Counter(job.state for job in self._jobs.values())
            return {
                "jobs": len(self._jobs),
                "jobs_by_state": dict(states),
                "jobs_running": len(self._threads),
                "batches_used": batches,
                "records_used": records,
                **self.configure(),
            }

    def snapshot(self):
        """Every job's info, in creation order."""
        with self._lock:
            return [job.info() for job in self._jobs.values()]

    def shutdown(self, timeout=5.0):
        """Stop every job's processing (they stay in the state they are in)."""
        with self._lock:
            for job in self._jobs.values():
                job.cancel.set()
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def reset_usage(self):
        """Forget the allocations' use (as if 24 hours had passed)."""
        with self._lock:
            self._used.clear()

    def clear(self):
        """Stop processing and forget every job and the allocations' use."""
        self.shutdown()
        with self._lock:
            self._jobs.clear()
            self._used.clear()

    # -- jobs ----------------------------------------------------------------------------------

    def create(self, spec, version):
        job = Job(
            id=ids.make("750", next(self._serial)),
            operation=spec["operation"],
            object=spec["object"],
            external_id_field=spec.get("externalIdFieldName"),
            line_ending=spec["lineEnding"],
            delimiter=spec["columnDelimiter"],
            api_version=version,
            created_by=self._org.user_id,
            created=timestamp(),
            modstamp=timestamp(),
        )
        with self._lock:
            self._jobs[job.id] = job
        return job

    def get(self, job_id):
        key = ids.normalize(job_id)
        with self._lock:
            job = self._jobs.get(key) if key else None
        if job is None:
            raise not_found()
        return job

    def all(self):
        with self._lock:
            return list(self._jobs.values())

    def upload(self, job, data):
        with self._lock:
            if job.state != "Open":
                raise SalesforceError(
                    409,
                    "INVALIDJOBSTATE",
                    f"Job {job.id} is in state {job.state}: data can only be uploaded to an "
                    "Open job",
                )
            job.uploads.append(data)

    def close(self, job):
        """Mark the job UploadComplete and start its processing; returns its summary as of the
        change."""
        with self._lock:
            if job.state != "Open":
                raise _refused("Closing", job)
            if len(job.uploads) > 1:
                raise bad_request(
                    "INVALIDJOB",
                    f"Found multipe contents for job: <{job.id[:15]}>, please 'Close' / 'Abort' "
                    "/ 'Delete' the current Job then create a new Job and make sure you only do "
                    "'PUT' once on a given Job.",
                )
            self._set_state(job, "UploadComplete")
            summary = job.summary()
            thread = threading.Thread(
                target=self._run, args=(job,), daemon=True, name="sandbox-salesforce-bulk"
            )
            self._threads.add(thread)
        thread.start()
        return summary

    def abort(self, job):
        """Mark the job Aborted and stop its processing; returns its summary."""
        with self._lock:
            if job.state in TERMINAL:
                raise _refused("Aborting", job)
            self._set_state(job, "Aborted")
            job.cancel.set()
            return job.summary()

    def delete(self, job):
        with self._lock:
            if job.state not in DELETABLE:
                raise bad_request(
                    "INVALIDJOBSTATE",
                    f"Job {job.id} is in state {job.state}: only UploadComplete, JobComplete, "
                    "Aborted or Failed jobs can be deleted",
                )
            job.cancel.set()
            del self._jobs[job.id]

    def results(self, job, kind):
        """The CSV text of a job's ``successful``, ``failed`` or ``unprocessed`` records."""
        with self._lock:
            header, records = job.header, job.records
            outcomes = list(job.outcomes)
            data = job.data
        if header is None and kind == "unprocessed":
            return data.decode("utf-8", errors="replace")
        if header is None:
            header = _header_of(job, data)
        pairs = list(zip(records or [], outcomes, strict=False))
        if kind == "successful":
            rows = [
                [o.id, "true" if o.created else "false", *r.values]
                for r, o in pairs
                if isinstance(o, _Success)
            ]
            prefix = ["sf__Id", "sf__Created"]
        elif kind == "failed":
            rows = [[o.id, o.error, *r.values] for r, o in pairs if isinstance(o, _Failure)]
            prefix = ["sf__Id", "sf__Error"]
        else:
            rows = [r.values for r in (records or [])[len(outcomes) :]]
            prefix = []
        return bulk_csv.write(prefix, header, rows, job.delimiter, job.line_ending)

    # -- processing ----------------------------------------------------------------------------

    def _set_state(self, job, state):
        job.state = state
        job.modstamp = timestamp()

    def _run(self, job):
        try:
            if job.cancel.wait(self.latency):
                return
            with self._lock:
                if job.state != "UploadComplete":
                    return
                self._set_state(job, "InProgress")
            if job.cancel.wait(self.latency):
                return
            started = time.monotonic()
            self._process(job)
            with self._lock:
                job.processing_ms = int((time.monotonic() - started) * 1000)
                if job.state == "InProgress":
                    self._set_state(job, "JobComplete")
        except Exception:
            log.exception("sandbox org failed to process a bulk job", extra={"job": job.id})
            self._fail(job, "UNKNOWN_EXCEPTION : An unexpected error occurred")
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _fail(self, job, message):
        with self._lock:
            if job.state not in TERMINAL:
                job.error_message = message
                self._set_state(job, "Failed")

    def _process(self, job):
        store = self._org.store
        try:
            header, records = bulk_csv.parse(job.data, job.delimiter, job.line_ending)
            plan = _Plan(job, store.schema.get(job.object), header)
            if not records:
                raise bulk_csv.CsvError("InvalidBatch : Records not found")
        except bulk_csv.CsvError as exc:
            self._fail(job, str(exc))
            return
        plan.count_keys(records)
        with self._lock:
            job.header, job.records = header, records
        writer = _Writer(store, plan)
        for start in range(0, len(records), BATCH_RECORDS):
            batch = records[start : start + BATCH_RECORDS]
            refusal = self._consume(len(batch))
            if refusal:
                self._fail(job, refusal)
                return
            for first in range(0, len(batch), CHUNK_RECORDS):
                if job.cancel.is_set():
                    return
                with store.transaction():
                    outcomes = [writer.apply(r) for r in batch[first : first + CHUNK_RECORDS]]
                with self._lock:
                    job.outcomes.extend(outcomes)
                    job.failed_count += sum(isinstance(o, _Failure) for o in outcomes)

    def _expire(self):
        horizon = self._clock() - WINDOW
        while self._used and self._used[0][0] <= horizon:
            self._used.popleft()

    def _consume(self, records):
        """Count one internal batch of ``records``; the job's errorMessage if over an
        allocation."""
        with self._lock:
            self._expire()
            batches = sum(b for _, b, _ in self._used)
            used = sum(r for _, _, r in self._used)
            if batches + 1 > self.daily_batches:
                return (
                    "ExceededQuota : The org has used its allocation of "
                    f"{self.daily_batches} batches in the last 24 hours"
                )
            if used + records > self.daily_records:
                return (
                    "ExceededQuota : The org has used its allocation of "
                    f"{self.daily_records} records in the last 24 hours"
                )
            self._used.append((self._clock(), 1, records))
            return None


def _refused(verb, job):
    word = _STATE_WORDS.get(job.state, job.state)
    return bad_request("INVALIDJOBSTATE", f"{verb} already {word} Job not allowed")


def _header_of(job, data):
    """The uploaded field names of a job that was never processed, if they can be read."""
    try:
        return bulk_csv.parse(data, job.delimiter, job.line_ending)[0]
    except bulk_csv.CsvError:
        return []


# -- handlers ----------------------------------------------------------------------------------


def _spec(call):
    """The create request's job properties, checked, with their defaults."""
    body = validation.ensure_dict(call.json(), "JobInfo")
    spec = {
        "object": body.get("object"),
        "operation": body.get("operation"),
        "contentType": body.get("contentType", "CSV"),
        "lineEnding": body.get("lineEnding", "LF"),
        "columnDelimiter": body.get("columnDelimiter", "COMMA"),
    }
    if spec["operation"] == "hardDelete":
        raise bad_request("FEATURENOTENABLED", "Bulk API Hard Delete isn't enabled for this user")
    if spec["operation"] not in OPERATIONS:
        raise bad_request("INVALIDJOB", f"Invalid operation: {spec['operation']}")
    checks = (
        ("contentType", ("CSV",)),
        ("lineEnding", tuple(bulk_csv.LINE_ENDINGS)),
        ("columnDelimiter", tuple(bulk_csv.DELIMITERS)),
    )
    for key, allowed in checks:
        if spec[key] not in allowed:
            raise bad_request("INVALIDJOB", f"Invalid {key}: {spec[key]}")
    obj = call.schema.get(spec["object"]) if isinstance(spec["object"], str) else None
    if obj is None:
        raise bad_request(
            "INVALIDENTITY", f"Entity '{spec['object']}' is not supported by the Bulk API."
        )
    spec["object"] = obj.name
    if spec["operation"] == "upsert":
        spec["externalIdFieldName"] = _external_id(obj, body.get("externalIdFieldName"))
    return spec


def _external_id(obj, name):
    if not name:
        raise bad_request(
            "INVALIDJOB",
            f"External ID was blank for {obj.name}. An External ID must be specified for upsert.",
        )
    f = obj.field(name)
    if f is None or not (f.external_id or f.id_lookup):
        raise bad_request(
            "INVALIDJOB",
            f"Field name provided, {name} does not match an External ID, Salesforce Id, or "
            f"indexed field for {obj.name}",
        )
    return f.name


def create(call):
    job = call.org.bulk.create(_spec(call), call.version)
    return Answer(200, job.summary())


def list_jobs(call):
    locator = call.param("queryLocator")
    if locator:
        cursor, _, position = locator.rpartition("-")
        taken = call.org.cursors.take(cursor) if position.isdigit() else None
        if taken is None:
            raise bad_request("INVALID_QUERY_LOCATOR", "invalid query locator")
        records, start = taken[0], int(position)
    else:
        cursor, start = None, 0
        wanted = call.param("jobType") in (None, "V2Ingest")
        chunked = (call.param("isPkChunkingEnabled") or "").lower() == "true"
        jobs = call.org.bulk.all() if wanted and not chunked else []
        records = [job.summary() for job in jobs]
    end = start + LIST_PAGE
    out = {"done": end >= len(records), "records": records[start:end], "nextRecordsUrl": None}
    if not out["done"]:
        cursor = cursor or call.org.cursors.open(records, LIST_PAGE)
        out["nextRecordsUrl"] = (
            f"/services/data/v{call.version}/jobs/ingest?queryLocator={cursor}-{end}"
        )
    return Answer(200, out)


def info(call, job_id):
    return Answer(200, call.org.bulk.get(job_id).info())


def set_state(call, job_id):
    jobs = call.org.bulk
    job = jobs.get(job_id)
    state = validation.ensure_dict(call.json(), "JobInfo").get("state")
    if state == "UploadComplete":
        return Answer(200, jobs.close(job))
    if state == "Aborted":
        return Answer(200, jobs.abort(job))
    raise bad_request(
        "INVALIDJOBSTATE",
        f"Invalid state {state}: a job can be set to UploadComplete or Aborted",
    )


def delete(call, job_id):
    jobs = call.org.bulk
    jobs.delete(jobs.get(job_id))
    return Answer(204)


def upload(call, job_id):
    jobs = call.org.bulk
    job = jobs.get(job_id)
    media = (call.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media != CSV_TYPE:
        raise SalesforceError(
            415, "UNSUPPORTED_MEDIA_TYPE", f"Content type '{media or 'none'}' not supported"
        )
    if not call.body:
        raise bad_request("INVALIDBATCH", "The upload has no data: send the CSV as the body")
    jobs.upload(job, call.body)
    return Answer(201)


def results(call, job_id, kind):
    which = RESULTS.get(kind.lower())
    if which is None:
        raise not_found()
    jobs = call.org.bulk
    return Answer(
        200, jobs.results(jobs.get(job_id), which), content_type=f"{CSV_TYPE};charset=UTF-8"
    )
