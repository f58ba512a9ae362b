"""Bulk API 2.0 ingest jobs through simple-salesforce's ``bulk2`` client.

``BulkClient(settings, tokens, session).upsert(sobject, external_id_field, rows)`` writes
``rows`` (dicts of field name to value) in ingest jobs of at most ``JOB_RECORDS`` records
(Salesforce counts one batch per 10,000 records of a job against the org's 15,000 a day), each
``POST jobs/ingest``, ``PUT .../batches`` (CSV), ``PATCH`` to ``UploadComplete``, polled until
``JobComplete``; then it reads each job's ``successfulResults/`` and, when the job reports failed
records, ``failedResults/``. It returns a ``JobOutcome`` per row, in order (a row neither result
names fails with ``UNKNOWN_RESULT``). ``insert`` does the same for records only ever
created (contact roles).

Values are written as Salesforce's CSV reads them: None as ``#N/A`` (null the field), booleans
as ``true``/``false``, decimals as their text; simple-salesforce quotes what needs quoting.

A job Salesforce fails as a whole (``Failed``, ``Aborted``: unreadable data, a field the object
lacks, the daily allocation exhausted) raises ``BulkJobFailed``, a ``RetryLater``: the rows were
not written and go the way of single orders. ``batches_left()`` reads what the org has left of
the daily batch allocation (``GET /limits``, one API call).

simple-salesforce is used as is: its client makes the calls, polls with a growing interval, and
aborts the job when an upload fails. Its ``delete_job`` is not called (it fails on the 204
Salesforce answers); Salesforce deletes jobs itself after seven days.
"""

import csv
import io
import logging
import math
from dataclasses import dataclass
from decimal import Decimal

from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

from magsync.errors import RetryLater

log = logging.getLogger(__name__)

JOB_RECORDS = 10_000
NULL = "#N/A"
# Seconds before the first poll of a job, and between polls (simple-salesforce's interval grows
# from this one; at 2 s it stays there): each poll is an API call, and a job takes seconds.
POLL_INTERVAL = 2.0


class BulkJobFailed(RetryLater):
    """A Bulk API job failed as a whole: none of its rows was written."""

    reason = "bulk_job_failed"
    system = "salesforce"


@dataclass(frozen=True)
class JobOutcome:
    """What a job did with one row: ``record_id`` and ``created`` when written, else ``error``
    (Salesforce's ``sf__Error``: ``CODE:message:Field1 Field2 --``)."""

    record_id: str | None = None
    created: bool | None = None
    error: str | None = None

    @property
    def ok(self):
        return self.error is None


def csv_value(value):
    """``value`` as a Bulk API CSV field."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def csv_rows(rows):
    """``rows`` as CSV records of one header: every field any row has (missing: empty, which
    leaves the field as it is)."""
    names = []
    for row in rows:
        names.extend(name for name in row if name not in names)
    return [{name: csv_value(row[name]) if name in row else "" for name in names} for row in rows]


def parse_error(text):
    """``(code, message, fields)`` of an ``sf__Error``."""
    code, _, rest = (text or "").partition(":")
    message, _, fields = rest.rpartition(":")
    if not message:
        message, fields = rest, ""
    names = [name for name in fields.replace("--", "").split() if name]
    return code.strip() or "UNKNOWN", message.strip(), names


class BulkClient:
    """Bulk API 2.0 ingest for one process, with the process's token and HTTP session."""

    def __init__(self, settings, tokens, session, rest=None):
        self.settings = settings
        self.tokens = tokens
        self.session = session
        self.rest = rest
        self.jobs = 0

    def _client(self):
        token = self.tokens.current()
        return Salesforce(
            instance_url=token.instance_url,
            session_id=token.access_token,
            session=self.session,
            version=self.settings.sf_api_version,
        )

    def upsert(self, sobject, external_id_field, rows):
        """A ``JobOutcome`` per row of ``rows``, upserted on ``external_id_field``."""
        return self._load(sobject, "upsert", rows, external_id_field, external_id_field)

    def insert(self, sobject, rows, key):
        """A ``JobOutcome`` per row of ``rows``, created; ``key`` is a field whose value tells
        the rows apart in the results (such as a contact role's ``OpportunityId``)."""
        return self._load(sobject, "insert", rows, key, None)

    def batches_left(self):
        """The org's Bulk API batches left in its rolling 24 hours (None when not reported)."""
        if self.rest is None:
            return None
        limits = self.rest.call("GET", self.rest.data_path("limits"))
        return (limits.get("DailyBulkApiBatches") or {}).get("Remaining")

    def _load(self, sobject, operation, rows, key, external_id_field):
        outcomes = {}
        for start in range(0, len(rows), JOB_RECORDS):
            chunk = rows[start : start + JOB_RECORDS]
            outcomes.update(self._job(sobject, operation, chunk, key, external_id_field))
        missing = JobOutcome(error="UNKNOWN_RESULT:the job reported nothing about this row:--")
        return [outcomes.get(str(row[key]), missing) for row in rows]

    def _job(self, sobject, operation, rows, key, external_id_field):
        handler = getattr(self._client().bulk2, sobject)
        options = {"records": csv_rows(rows), "batch_size": JOB_RECORDS, "wait": POLL_INTERVAL}
        if external_id_field is not None:
            options["external_id_field"] = external_id_field
        try:
            [result] = getattr(handler, operation)(**options)
        except SalesforceError as exc:
            raise BulkJobFailed(f"Bulk API {operation} of {sobject} failed: {exc}") from None
        self.jobs += 1
        job_id = result["job_id"]
        outcomes = {}
        for record in _read(handler.get_successful_records(job_id)):
            outcomes[record.get(key, "")] = JobOutcome(
                record.get("sf__Id") or None, record.get("sf__Created") == "true"
            )
        if int(result.get("numberRecordsFailed") or 0):  # else a call saved
            for record in _read(handler.get_failed_records(job_id)):
                outcomes[record.get(key, "")] = JobOutcome(error=record.get("sf__Error") or "")
        log.info(
            "bulk job complete",
            extra={
                "job": job_id,
                "sobject": sobject,
                "operation": operation,
                "records": len(rows),
                "failed": result.get("numberRecordsFailed"),
            },
        )
        return outcomes


def _read(text):
    return list(csv.DictReader(io.StringIO(text or "", newline="")))


def batches_needed(records):
    """Internal batches a job of ``records`` counts against the daily allocation."""
    return max(1, math.ceil(records / JOB_RECORDS))
