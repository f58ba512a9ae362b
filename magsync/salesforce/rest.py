"""Authenticated calls to the org's REST API: the one path every Salesforce request takes.

``build_session(settings)`` is the HTTP session (keep-alive, the configured CA bundle).
``RestClient.call(method, path, document)`` sends one request under ``<instance><path>`` with
the process's token (``TokenProvider``); when Salesforce answers 401 (``INVALID_SESSION_ID``) it
refreshes the token and sends the request once more, and a second 401 is an
``AuthenticationFailed``. Any other answer of 300 or more raises the outcome
``classify_salesforce`` gives it; a timeout or a connection failure is a ``RetryLater``.

Each request waits for its turn in the process's ``Pacer`` (``magsync.salesforce.pacing``: the
token bucket of ``SALESFORCE_RATE_LIMIT``), and each answer's ``Sforce-Limit-Info`` is handed to
it (the org's API usage, for quota-aware pacing).

The writer (``magsync.salesforce.writer``) and ``magsync check`` both call through it. It counts
this thread's requests (``calls``) and keeps the org's last reported API usage. At most
``MAGSYNC_SALESFORCE_CONCURRENCY`` requests of one client are in flight at once, so the org sees
few concurrent requests from a worker process however many orders it holds; a request that finds
no free slot within ``SALESFORCE_TIMEOUT`` seconds is a ``RetryLater`` (``salesforce_busy``).
"""

import json
import logging
import threading
from decimal import Decimal

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

from magsync.errors import RetryLater, SessionExpired, classify_salesforce
from magsync.salesforce import pacing

log = logging.getLogger(__name__)


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


def _body(response):
    """The JSON of an answer; an answer without content is ``{}``, one that is not JSON its text."""
    if response.status_code == 204 or not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        return response.text


class RestClient:
    """Requests to the org's REST API with the process's token; thread-safe.

    ``pacer`` paces the requests and receives the usage answers report; by default the
    process's own (``pacing.process_pacer()``, looked up at each request).
    """

    def __init__(self, settings, tokens, session, pacer=None):
        self.settings = settings
        self.tokens = tokens
        self.session = session
        self._pacer = pacer
        self._local = threading.local()
        self._slots = threading.BoundedSemaphore(settings.salesforce_concurrency)

    @property
    def pacer(self):
        return self._pacer or pacing.process_pacer()

    def data_path(self, path):
        """``path`` under the data API of the configured version (``sobjects/Account``)."""
        return f"/services/data/v{self.settings.sf_api_version}/{path}"

    def call(self, method, path, document=None):
        """The JSON answer of ``method <instance><path>`` (``{}`` when empty); see the module.

        A token refused right after its refresh is an ``AuthenticationFailed`` (reported by the
        token provider).
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

    @property
    def calls(self):
        """Requests this thread has sent (every request counts, a refused one too)."""
        return getattr(self._local, "calls", 0)

    @property
    def last_api_usage(self):
        """The ``Sforce-Limit-Info`` of this thread's last answer (``api-usage=N/M``)."""
        return getattr(self._local, "api_usage", None)

    def _send(self, token, method, path, document):
        # simple-salesforce's own request function (the one behind ``restful``): its headers, its
        # error types; it takes a whole URL, so paths outside the versioned data API (the list
        # of versions) go the same way. Built with a session id, it never refreshes by itself.
        client = Salesforce(
            instance_url=token.instance_url,
            session_id=token.access_token,
            session=self.session,
            version=self.settings.sf_api_version,
        )
        pacer = self.pacer
        # The token bucket first: a request waiting for its turn holds no slot.
        pacer.before_call()
        if not self._slots.acquire(timeout=self.settings.sf_timeout):
            raise RetryLater(
                "no Salesforce request slot of this process became free in time",
                reason="salesforce_busy",
                system="magsync",
            )
        try:
            return self._request(client, token, method, path, document, pacer)
        finally:
            self._slots.release()

    def _request(self, client, token, method, path, document, pacer):
        self._local.calls = self.calls + 1
        answer = {}
        try:
            response = client._call_salesforce(
                method,
                token.instance_url + path,
                name=path,
                data=dumps(document) if document is not None else None,
                timeout=self.settings.sf_timeout,
                hooks={"response": lambda r, *args, **kwargs: self._remember(r, answer)},
            )
        except SalesforceError as exc:
            headers = answer["response"].headers if "response" in answer else {}
            raise classify_salesforce(exc.status, exc.content, headers) from None
        except requests.Timeout:
            raise RetryLater("Salesforce did not answer in time", reason="timeout") from None
        except requests.RequestException as exc:
            raise RetryLater(
                f"Salesforce unreachable: {type(exc).__name__}", reason="connection_error"
            ) from None
        finally:
            if answer.get("usage"):
                pacer.observed(answer["usage"])
        return _body(response)

    def _remember(self, response, answer):
        answer["response"] = response
        usage = response.headers.get("Sforce-Limit-Info")
        if usage:
            self._local.api_usage = answer["usage"] = usage
        return response
