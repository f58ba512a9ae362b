"""Writing records to Salesforce with simple-salesforce, one API call per batch.

``SalesforceWriter.upsert(records)`` upserts by external id:

- one record: ``PATCH sobjects/{Type}/{ExtField}/{value}`` (value URL-encoded, which
  simple-salesforce's own ``upsert`` does not do), answering 201 created / 200 updated;
- several (same object and key): sObject Collections ``PATCH composite/sobjects/{Type}/{ExtField}``
  in chunks of 200, one API call each, with a result per record.

``query(soql)`` runs a SOQL query (build its literals with ``soql.literal``);
``composite(subrequests)`` sends up to 25 ``Subrequest`` in one Composite call, all or none, later
ones referring to earlier results as ``@{ref.id}``. ``calls`` counts this thread's API calls.

A call that fails as a whole raises the outcome ``classify_salesforce`` gives it. An expired
session is refreshed through the ``TokenProvider`` and the call repeated once; a second 401 is an
``AuthenticationFailed``.
"""

import json
import logging
import threading
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import quote, urlencode

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

from magsync.errors import (
    RetryLater,
    SessionExpired,
    SyncError,
    classify_salesforce,
)

log = logging.getLogger(__name__)

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


def reference(reference_id, field="id"):
    """The value a later subrequest uses for a field of an earlier one's result."""
    return f"@{{{reference_id}.{field}}}"


def _upsert_path(record):
    return (
        f"sobjects/{record.sobject}/{record.external_id_field}/{quote(record.external_id, safe='')}"
    )


@dataclass(frozen=True)
class UpsertResult:
    """What Salesforce did with one record: ``id`` and ``created``, or ``error`` (an outcome)."""

    record: object
    id: str | None = None
    created: bool | None = None
    error: SyncError | None = None

    @property
    def ok(self):
        return self.error is None


def _encode_decimal(value):
    if isinstance(value, Decimal):
        # JSON numbers are written from floats here; Salesforce currency and number fields hold
        # at most 18 digits, well inside a float's exact round-trip of 15 significant digits,
        # and the check below refuses any value whose text would change.
        as_float = float(value)
        if Decimal(repr(as_float)) != value.normalize():
            raise ValueError(f"{value} cannot be written exactly as a JSON number")
        return as_float
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(document):
    """JSON for Salesforce, with ``Decimal`` written as exact numbers."""
    return json.dumps(document, default=_encode_decimal, ensure_ascii=False)


class _Session(requests.Session):
    """A session whose configured CA bundle wins over ``REQUESTS_CA_BUNDLE`` in the environment.

    requests lets that variable override ``Session.verify``; proxies still come from the
    environment as usual.
    """

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if verify is None and isinstance(self.verify, str):
            verify = self.verify
        return super().merge_environment_settings(url, proxies, stream, verify, cert)


def build_session(settings):
    """A ``requests.Session`` for Salesforce: keep-alive, CA bundle when one is configured."""
    session = _Session()
    if settings.sf_ca_bundle:
        session.verify = settings.sf_ca_bundle
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
    session.mount("https://", adapter)
    return session


class SalesforceWriter:
    """Upserts records; thread-safe; one per worker process (it shares the process's token)."""

    def __init__(self, settings, tokens, session):
        self.settings = settings
        self.tokens = tokens
        self.session = session
        self._local = threading.local()
        session.hooks["response"].append(self._remember_response)

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

    def query(self, soql):
        """The records of a SOQL query's first page (keep results small with ``LIMIT``)."""
        body = self._call("GET", "query/?" + urlencode({"q": soql}), None)
        return list(body.get("records") or [])

    def composite(self, subrequests):
        """Run ``subrequests`` in one Composite call, all or none; ``{reference_id: body}``.

        When a subrequest fails, Salesforce rolls back the others; the outcome raised is the one
        ``classify_salesforce`` gives the failed subrequest's own status and errors.
        """
        if not 0 < len(subrequests) <= COMPOSITE_LIMIT:
            raise ValueError(f"a Composite call takes 1 to {COMPOSITE_LIMIT} subrequests")
        base = f"/services/data/v{self.settings.sf_api_version}/"
        document = {
            "allOrNone": True,
            "compositeRequest": [
                {
                    "method": sub.method,
                    "url": base + sub.path,
                    "referenceId": sub.reference_id,
                    **({"body": sub.body} if sub.body is not None else {}),
                }
                for sub in subrequests
            ],
        }
        answer = self._call("POST", "composite", document)
        results = {}
        failures = []
        for item in answer.get("compositeResponse") or []:
            status = item.get("httpStatusCode") or 500
            if status >= 400:
                failures.append((status, item.get("body")))
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
        return getattr(self._local, "calls", 0)

    @property
    def last_api_usage(self):
        """The ``Sforce-Limit-Info`` of this thread's last response (``api-usage=N/M``)."""
        return getattr(self._local, "api_usage", None)

    # -- calls ----------------------------------------------------------------------------------

    def _upsert_one(self, record):
        body = self._call("PATCH", _upsert_path(record), record.body())
        return UpsertResult(record, id=body.get("id"), created=bool(body.get("created")))

    def _upsert_collection(self, records):
        first = records[0]
        path = f"composite/sobjects/{first.sobject}/{first.external_id_field}"
        document = {
            "allOrNone": False,
            "records": [{"attributes": {"type": r.sobject}, **r.fields} for r in records],
        }
        outcomes = self._call("PATCH", path, document)
        results = []
        for record, outcome in zip(records, outcomes, strict=True):
            if outcome.get("success"):
                results.append(
                    UpsertResult(record, id=outcome.get("id"), created=outcome.get("created"))
                )
            else:
                # Collections always answer 200; each failed record carries its own errors.
                status = 400
                error = classify_salesforce(status, outcome.get("errors") or [])
                results.append(UpsertResult(record, error=error))
        return results

    def _call(self, method, path, document):
        """One REST call with the process's token; refresh and repeat once on a 401.

        A second 401 is an ``AuthenticationFailed`` (reported by the token provider).
        """
        token = self.tokens.current()
        try:
            result = self._send(token, method, path, document)
        except SessionExpired:
            log.info("salesforce session expired, refreshing", extra={"path": path})
        else:
            self.tokens.accepted()
            return result
        token = self.tokens.refresh(token)
        try:
            result = self._send(token, method, path, document)
        except SessionExpired as exc:
            raise self.tokens.refused(token, exc.errors) from None
        self.tokens.accepted()
        return result

    def _send(self, token, method, path, document):
        client = Salesforce(
            instance_url=token.instance_url,
            session_id=token.access_token,
            session=self.session,
            version=self.settings.sf_api_version,
        )
        self._local.response = None
        self._local.calls = self.calls + 1
        try:
            result = client.restful(
                path,
                method=method,
                data=dumps(document) if document is not None else None,
                timeout=self.settings.sf_timeout,
            )
        except SalesforceError as exc:
            response = self._local.response
            headers = response.headers if response is not None else {}
            raise classify_salesforce(exc.status, exc.content, headers) from None
        except requests.Timeout:
            raise RetryLater("Salesforce did not answer in time", reason="timeout") from None
        except requests.RequestException as exc:
            raise RetryLater(
                f"Salesforce unreachable: {type(exc).__name__}", reason="connection_error"
            ) from None
        return result if result is not None else {}

    def _remember_response(self, response, *args, **kwargs):
        self._local.response = response
        usage = response.headers.get("Sforce-Limit-Info")
        if usage:
            self._local.api_usage = usage
        return response


def _error_items(body):
    return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []
