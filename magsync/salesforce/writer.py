"""Writing records to Salesforce, one API call per batch.

``SalesforceWriter.upsert(records)`` upserts by external id:

- one record: ``PATCH sobjects/{Type}/{ExtField}/{value}`` (value URL-encoded), answering 201
  created / 200 updated;
- several (same object and key): sObject Collections ``PATCH composite/sobjects/{Type}/{ExtField}``
  in chunks of 200, one API call each, with a result per record.

``create(records)`` and ``update(updates)`` are sObject Collections too (``POST`` / ``PATCH
composite/sobjects``, 200 records of any objects per call), each record on its own
(``allOrNone`` false): a result per record, in order.

``query(soql)`` runs a SOQL query (build its literals with ``soql.literal``), ``query_all(soql)``
follows its pages; ``composite(subrequests)`` sends up to 25 ``Subrequest`` in one Composite
call, all or none, later ones referring to earlier results as ``@{ref.id}`` (or, after a
Collections subrequest, ``@{ref[3].id}``); ``composite_each`` answers each subrequest's status and
body as they came. ``calls`` counts this thread's API calls.

Every call goes through ``magsync.salesforce.rest.RestClient``: a call that fails as a whole
raises the outcome ``classify_salesforce`` gives it, and an expired session is refreshed and the
call repeated once.
"""

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from magsync.errors import RetryLater, SyncError, classify_salesforce
from magsync.salesforce.rest import RestClient

COLLECTION_LIMIT = 200
COMPOSITE_LIMIT = 25


@dataclass(frozen=True)
class Subrequest:
    """One Composite subrequest: ``path`` is relative to the data API (``sobjects/Account``)."""

    reference_id: str
    method: str
    path: str
    body: dict | None = None

    @classmethod
    def create(cls, reference_id, sobject, fields):
        return cls(reference_id, "POST", f"sobjects/{sobject}", fields)

    @classmethod
    def update(cls, reference_id, sobject, record_id, fields):
        return cls(reference_id, "PATCH", f"sobjects/{sobject}/{record_id}", fields)

    @classmethod
    def upsert(cls, reference_id, record):
        return cls(reference_id, "PATCH", _upsert_path(record), record.body())

    @classmethod
    def upsert_many(cls, reference_id, records):
        """A Collections upsert of ``records`` (one object and external-id field, at most 200),
        each on its own."""
        first = records[0]
        path = f"composite/sobjects/{first.sobject}/{first.external_id_field}"
        return cls(reference_id, "PATCH", path, _collection(records, False))

    @classmethod
    def create_many(cls, reference_id, records, all_or_none=False):
        """A Collections create of ``records`` (``NewRecord``, at most 200)."""
        return cls(reference_id, "POST", "composite/sobjects", _collection(records, all_or_none))

    @classmethod
    def update_many(cls, reference_id, updates, all_or_none=False):
        """A Collections update of ``updates`` (``Update``, at most 200)."""
        return cls(reference_id, "PATCH", "composite/sobjects", _collection(updates, all_or_none))


def _collection_record(record):
    """One record of a Collections request body (``attributes.type`` and its fields)."""
    fields = record.payload() if hasattr(record, "payload") else dict(record.fields)
    if getattr(record, "record_id", None):
        fields["Id"] = record.record_id
    return {"attributes": {"type": record.sobject}, **fields}


def _collection(records, all_or_none):
    if not 0 < len(records) <= COLLECTION_LIMIT:
        raise ValueError(f"a Collections request takes 1 to {COLLECTION_LIMIT} records")
    return {"allOrNone": all_or_none, "records": [_collection_record(r) for r in records]}


def record_results(records, outcomes):
    """A ``UpsertResult`` per record from a Collections answer (results in request order).

    Collections always answer 200; each failed record carries its own errors, classified here.
    """
    results = []
    for record, outcome in zip(records, outcomes, strict=True):
        if outcome.get("success"):
            results.append(
                UpsertResult(record, id=outcome.get("id"), created=outcome.get("created"))
            )
        else:
            error = classify_salesforce(400, outcome.get("errors") or [])
            results.append(UpsertResult(record, error=error))
    return results


@dataclass(frozen=True)
class SubResult:
    """One Composite subrequest's answer: its status and body as Salesforce gave them."""

    reference_id: str
    status: int
    body: object

    @property
    def ok(self):
        return self.status < 400


def reference(reference_id, field="id"):
    """The value a later subrequest uses for a field of an earlier one's result."""
    return f"@{{{reference_id}.{field}}}"


def _upsert_path(record):
    return (
        f"sobjects/{record.sobject}/{record.external_id_field}/{quote(record.external_id, safe='')}"
    )


@dataclass(frozen=True)
class UpsertResult:
    """What Salesforce did with one record (an upsert, create or update): ``id`` and
    ``created``, or ``error`` (an outcome)."""

    record: object
    id: str | None = None
    created: bool | None = None
    error: SyncError | None = None

    @property
    def ok(self):
        return self.error is None


class SalesforceWriter:
    """Upserts records; thread-safe; one per worker process (it shares the process's token)."""

    def __init__(self, settings, tokens, session):
        self.settings = settings
        self.tokens = tokens
        self.session = session
        self.rest = RestClient(settings, tokens, session)

    # -- public ---------------------------------------------------------------------------------

    def upsert(self, records):
        """Upsert ``records`` (one object and external-id field); a result per record, in order."""
        if not records:
            return []
        first = records[0]
        if any(
            (r.sobject, r.external_id_field) != (first.sobject, first.external_id_field)
            for r in records
        ):
            raise ValueError("records of one upsert must share object and external-id field")
        if len(records) == 1:
            return [self._upsert_one(first)]
        results = []
        for start in range(0, len(records), COLLECTION_LIMIT):
            results.extend(self._upsert_collection(records[start : start + COLLECTION_LIMIT]))
        return results

    def create(self, records):
        """Create ``records`` (``NewRecord``), 200 per call; a result per record, in order."""
        return self._each_collection("POST", records)

    def update(self, updates):
        """Update records by Id (``Update``), 200 per call; a result per record, in order."""
        return self._each_collection("PATCH", updates)

    def query(self, soql):
        """The records of a SOQL query's first page (keep results small with ``LIMIT``)."""
        body = self._call("GET", "query/?" + urlencode({"q": soql}), None)
        return list(body.get("records") or [])

    def query_all(self, soql):
        """Every record of a SOQL query: its first page and each next one (one call each)."""
        body = self._call("GET", "query/?" + urlencode({"q": soql}), None)
        records = list(body.get("records") or [])
        while not body.get("done", True) and body.get("nextRecordsUrl"):
            body = self.rest.call("GET", body["nextRecordsUrl"])
            records.extend(body.get("records") or [])
        return records

    def describe(self, sobject):
        """The describe of ``sobject`` (``GET sobjects/{Type}/describe``): its fields' flags."""
        return self._call("GET", f"sobjects/{sobject}/describe", None)

    def composite_each(self, subrequests, all_or_none=False):
        """Run ``subrequests`` in one Composite call; a ``SubResult`` per subrequest, in order.

        Nothing is raised for a failed subrequest: the caller reads each one's status and body.
        A subrequest the answer leaves out is a ``RetryLater``.
        """
        items = self._composite_call(subrequests, all_or_none)
        by_reference = {item.get("referenceId"): item for item in items}
        missing = [s.reference_id for s in subrequests if s.reference_id not in by_reference]
        if missing:
            raise RetryLater(
                f"Composite answer without results for {', '.join(missing)}",
                reason="composite_incomplete",
            )
        return [
            SubResult(
                s.reference_id,
                by_reference[s.reference_id].get("httpStatusCode") or 500,
                by_reference[s.reference_id].get("body"),
            )
            for s in subrequests
        ]

    def composite(self, subrequests):
        """Run ``subrequests`` in one Composite call, all or none; ``{reference_id: body}``.

        When a subrequest fails, Salesforce rolls back the others; the outcome raised is the one
        ``classify_salesforce`` gives the failed subrequest's own status and errors.
        """
        results = {}
        failures = []
        for item in self._composite_call(subrequests, True):
            status = item.get("httpStatusCode") or 500
            refused = _refused_record(item.get("body"))
            if status >= 400:
                failures.append((status, item.get("body")))
            elif refused is not None:
                # A Collections subrequest answers 200 with a failed record inside; under
                # allOrNone that fails the whole call, and its errors are the cause.
                failures.append((400, refused))
            else:
                results[item.get("referenceId")] = item.get("body") or {}
        if failures:
            # Under allOrNone every other subrequest answers PROCESSING_HALTED; the cause is the
            # one that does not.
            halted = {"PROCESSING_HALTED"}
            status, body = next(
                (
                    (status, body)
                    for status, body in failures
                    if {e.get("errorCode") for e in _error_items(body)} - halted
                ),
                failures[0],
            )
            raise classify_salesforce(status, body)
        missing = [s.reference_id for s in subrequests if s.reference_id not in results]
        if missing:
            raise RetryLater(
                f"Composite answer without results for {', '.join(missing)}",
                reason="composite_incomplete",
            )
        return results

    @property
    def calls(self):
        """API calls this thread has sent (every request to the data API counts)."""
        return self.rest.calls

    @property
    def last_api_usage(self):
        """The ``Sforce-Limit-Info`` of this thread's last response (``api-usage=N/M``)."""
        return self.rest.last_api_usage

    # -- calls ----------------------------------------------------------------------------------

    def _composite_call(self, subrequests, all_or_none):
        if not 0 < len(subrequests) <= COMPOSITE_LIMIT:
            raise ValueError(f"a Composite call takes 1 to {COMPOSITE_LIMIT} subrequests")
        document = {
            "allOrNone": all_or_none,
            "compositeRequest": [
                {
                    "method": sub.method,
                    "url": self.rest.data_path(sub.path),
                    "referenceId": sub.reference_id,
                    **({"body": sub.body} if sub.body is not None else {}),
                }
                for sub in subrequests
            ],
        }
        answer = self._call("POST", "composite", document)
        return list(answer.get("compositeResponse") or [])

    def _each_collection(self, method, records):
        results = []
        for start in range(0, len(records), COLLECTION_LIMIT):
            chunk = records[start : start + COLLECTION_LIMIT]
            outcomes = self._call(method, "composite/sobjects", _collection(chunk, False))
            results.extend(record_results(chunk, outcomes))
        return results

    def _upsert_one(self, record):
        body = self._call("PATCH", _upsert_path(record), record.body())
        return UpsertResult(record, id=body.get("id"), created=bool(body.get("created")))

    def _upsert_collection(self, records):
        first = records[0]
        path = f"composite/sobjects/{first.sobject}/{first.external_id_field}"
        return record_results(records, self._call("PATCH", path, _collection(records, False)))

    def _call(self, method, path, document):
        return self.rest.call(method, self.rest.data_path(path), document)


def _error_items(body):
    return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []


def _refused_record(body):
    """The errors of the first failed record of a Collections answer, else None."""
    if not isinstance(body, list):
        return None
    for item in body:
        if isinstance(item, dict) and item.get("success") is False:
            return item.get("errors") or []
    return None
