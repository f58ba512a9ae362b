"""``SandboxOrg``: one sandbox Salesforce org, its state, its server, and its control surface.

The control methods (``records``, ``insert``, ``stats``, ``reset_stats``, ``reset``,
``add_fault``, ``remove_fault``, ``clear_faults``, ``fault_rules``, ``set_latency``,
``expire_tokens``, ``issue_access_token``, ``issue_refresh_token``, ``revoke_user``,
``restore_user``, ``set_limits``, ``set_token_ttl``, ``set_bulk``, ``bulk_jobs``, ``settings``)
are the same, with the same arguments and results, on ``control.ControlClient`` for other
processes.
"""

import collections
import threading

from magsync.sandbox.salesforce import api, auth, bulk, certs, faults, validation
from magsync.sandbox.salesforce import schema as org_schema
from magsync.sandbox.salesforce.calls import Call
from magsync.sandbox.salesforce.errors import SalesforceError, request_limit
from magsync.sandbox.salesforce.store import Store


class SandboxOrg:
    """A local stand-in for a Salesforce org, served over HTTPS.

    ``state_dir`` keeps the CA, certificates, the connected app's keys and ids (created on first
    use, reused after). ``port=0`` picks a free port. ``token_ttl`` is the session timeout in
    seconds, ``daily_limit`` the daily API allowance, ``max_in_flight`` the number of concurrent
    data requests beyond which requests are refused (403 ConcurrentPerOrgLongTxn), ``schema`` the
    org's schema (None: the packaged one; a path or a dict: a variant org). ``latency_ms``,
    ``jitter_ms`` and ``fault_specs`` start the org with those already set. ``bulk_latency`` is
    how many seconds a closed Bulk API 2.0 job waits as UploadComplete, and again as InProgress,
    before its records are written; ``bulk_daily_batches`` and ``bulk_daily_records`` are the
    rolling-24-hour Bulk API allocations (``bulk.py``).
    """

    def __init__(
        self,
        state_dir,
        host="127.0.0.1",
        port=0,
        token_ttl=7200.0,
        daily_limit=5_000_000,
        max_in_flight=25,
        schema=None,
        latency_ms=0.0,
        jitter_ms=0.0,
        fault_specs=(),
        bulk_latency=0.0,
        bulk_daily_batches=bulk.DAILY_BATCHES,
        bulk_daily_records=bulk.DAILY_RECORDS,
    ):
        self.host = host
        self._port = int(port)
        self.identity = certs.ensure(state_dir, host)
        self.schema = org_schema.load(schema)
        self.store = Store(self.schema, self.identity.user_id)
        self.sessions = auth.Sessions(
            self.identity, certs.client_public_key(self.identity), token_ttl
        )
        self.cursors = api.Cursors()
        self.bulk = bulk.Jobs(self)
        self._faults = faults.Faults(latency_ms, jitter_ms)
        self._initial = {
            "token_ttl": float(token_ttl),
            "daily_limit": int(daily_limit),
            "max_in_flight": int(max_in_flight),
            "latency_ms": float(latency_ms),
            "jitter_ms": float(jitter_ms),
            "faults": [dict(spec) for spec in fault_specs],
            "bulk": {
                "latency": float(bulk_latency),
                "daily_batches": int(bulk_daily_batches),
                "daily_records": int(bulk_daily_records),
            },
        }
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = None
        self._thread = None
        self._restore_initial()
        self.standard_pricebook_id = None
        self._seed()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self):
        """Serve in background threads; returns self."""
        from magsync.sandbox.salesforce.server import SandboxServer, tls_context

        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = SandboxServer(self, (self.host, self._port), tls_context(self.identity))
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve, daemon=True, name="sandbox-salesforce"
        )
        self._thread.start()
        return self

    def stop(self):
        """Stop serving: wake held requests, close the socket and every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        self.bulk.shutdown()
        server.stop_serving()
        self._thread.join()
        server.server_close()
        server.close_connections()
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # -- identity ------------------------------------------------------------------------------

    @property
    def port(self):
        return self._port

    @property
    def url(self):
        """The login URL and instance URL: ``https://127.0.0.1:<port>``."""
        # A wildcard bind is reached over the loopback address the certificate names.
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host  # noqa: S104
        return f"https://{host}:{self._port}"

    ca_path = property(lambda self: self.identity.ca_path)
    client_key_path = property(lambda self: self.identity.client_key_path)
    client_cert_path = property(lambda self: self.identity.client_cert_path)
    client_id = property(lambda self: self.identity.client_id)
    client_secret = property(lambda self: self.identity.client_secret)
    username = property(lambda self: self.identity.username)
    org_id = property(lambda self: self.identity.org_id)
    user_id = property(lambda self: self.identity.user_id)

    def settings(self):
        """The settings a client needs, under magsync's names, ready for ``.env``."""
        return {
            "SALESFORCE_LOGIN_URL": self.url,
            "SALESFORCE_CLIENT_ID": self.client_id,
            "SALESFORCE_USERNAME": self.username,
            "SALESFORCE_PRIVATE_KEY_PATH": str(self.client_key_path),
            "SALESFORCE_CA_BUNDLE": str(self.ca_path),
        }

    # -- inspection ----------------------------------------------------------------------------

    def records(self, sobject):
        """The live records of ``sobject`` as stored (each with ``Id``), in creation order."""
        obj = self.schema.get(sobject)
        if obj is None:
            raise KeyError(sobject)
        return self.store.snapshot(obj.name)

    def insert(self, sobject, records):
        """Create ``records`` (dicts of fields) with the org's validation, without counting API
        calls; returns their ids. Raises ``SalesforceError`` and creates none if one is invalid."""
        obj = self.schema.get(sobject)
        if obj is None:
            raise KeyError(sobject)
        out = []
        with self.store.transaction():
            for body in records:
                values = validation.prepare(self.store, obj, validation.ensure_dict(body))
                record = self.store.insert(obj.name, values)
                validation.after_save(self.store, obj, record)
                out.append(record["Id"])
        return out

    def stats(self):
        """Counters since start or reset.

        ``api_calls`` (total) and ``calls_by_kind``: calls counted against the daily allowance,
        by the kinds of ``api.ROUTES`` (``upsert``, ``query``, ``composite``, ...);
        ``api_usage`` / ``daily_limit``: what ``Sforce-Limit-Info`` reports (``set_limits`` can
        move the usage); ``max_in_flight``;
        ``token_requests`` (every request to the token endpoint, faulted ones included, by
        grant: ``jwt-bearer``, ``refresh_token``, ``other``) and ``token_requests_total``;
        ``token_errors`` (errors the org answered, by OAuth error); ``rejected`` (by reason:
        ``INVALID_SESSION_ID``, ``TotalRequests``, ``ConcurrentPerOrgLongTxn``);
        ``faults_fired``; ``responses`` (by status code); ``in_flight`` and ``in_flight_peak``;
        ``bulk``: Bulk API 2.0 ``jobs`` (and ``jobs_by_state``, and ``jobs_running``: closed
        jobs whose processing has not ended), the ``batches_used`` and
        ``records_used`` of the last 24 hours, and the ``latency`` and ``daily_batches`` /
        ``daily_records`` allocations.
        """
        bulk_stats = self.bulk.stats()
        with self._lock:
            return {
                "api_calls": sum(self._api_calls.values()),
                "calls_by_kind": dict(self._api_calls),
                "api_usage": self._usage,
                "daily_limit": self.daily_limit,
                "max_in_flight": self.max_in_flight,
                "token_requests": dict(self._token_requests),
                "token_requests_total": sum(self._token_requests.values()),
                "token_errors": dict(self._token_errors),
                "rejected": dict(self._rejected),
                "faults_fired": self._faults.fired_total,
                "responses": {str(k): v for k, v in sorted(self._responses.items())},
                "in_flight": self._in_flight,
                "in_flight_peak": self._in_flight_peak,
                "bulk": bulk_stats,
            }

    def reset_stats(self):
        """Counters back to zero (the API usage and the Bulk API allocations' use too); records,
        Bulk API jobs, faults and limits stay."""
        self.bulk.reset_usage()
        with self._lock:
            self._usage = 0
            self._api_calls.clear()
            self._token_requests.clear()
            self._token_errors.clear()
            self._rejected.clear()
            self._responses.clear()
            self._in_flight_peak = self._in_flight
        self._faults.fired_total = 0

    def reset(self):
        """Records, Bulk API jobs, counters, faults, latency, limits and token TTL back to how the
        org started.

        Keys, certificates and issued access tokens stay; the user's authorization is restored.
        """
        # Jobs first: their threads take the store lock between chunks.
        self.bulk.clear()
        with self.store.lock:
            self.store.clear()
            self.cursors.clear()
            self._seed()
        self._restore_initial()
        self.sessions.restore(self.username)

    # -- control -------------------------------------------------------------------------------

    def fault_rules(self):
        """The fault rules in order, as dicts with ``id`` and ``fired``."""
        return [rule.describe() for rule in self._faults.rules()]

    def add_fault(self, spec=None, **fields):
        """Add a fault rule (see ``faults.py`` for its keys); returns it with its ``id``."""
        return self._faults.add({**(spec or {}), **fields}).describe()

    def remove_fault(self, rule_id):
        return self._faults.remove(rule_id)

    def clear_faults(self):
        self._faults.clear()

    def set_latency(self, latency_ms, jitter_ms=0.0):
        """Hold each Salesforce call ``latency_ms`` plus up to ``jitter_ms`` (uniform)."""
        self._faults.set_latency(latency_ms, jitter_ms)
        return {"latency_ms": self._faults.latency_ms, "jitter_ms": self._faults.jitter_ms}

    def expire_tokens(self):
        """Expire every access token now; returns how many were live."""
        return self.sessions.expire_all()

    def issue_access_token(self):
        """An access token for the known user without a token request (not counted)."""
        return self.sessions.issue()

    def issue_refresh_token(self):
        """A refresh token for the known user (as an interactive OAuth flow would grant)."""
        return self.sessions.issue_refresh_token()

    def revoke_user(self, username=None):
        """Withdraw the user's authorization: token grants fail with invalid_grant."""
        self.sessions.revoke(username or self.username)

    def restore_user(self, username=None):
        self.sessions.restore(username or self.username)

    def set_limits(self, daily_limit=None, max_in_flight=None, api_usage=None):
        """Change the daily allowance, the in-flight cap or today's usage; returns all three."""
        with self._lock:
            if daily_limit is not None:
                self.daily_limit = int(daily_limit)
            if max_in_flight is not None:
                self.max_in_flight = int(max_in_flight)
            if api_usage is not None:
                self._usage = int(api_usage)
            return {
                "daily_limit": self.daily_limit,
                "max_in_flight": self.max_in_flight,
                "api_usage": self._usage,
            }

    def set_bulk(self, latency=None, daily_batches=None, daily_records=None):
        """Change the Bulk API latency (seconds) or its rolling-24-hour allocations; returns all
        three (``latency``, ``daily_batches``, ``daily_records``)."""
        return self.bulk.configure(latency, daily_batches, daily_records)

    def bulk_jobs(self):
        """Every Bulk API 2.0 ingest job's info (as ``GET jobs/ingest/{id}`` answers), oldest
        first."""
        return self.bulk.snapshot()

    def set_token_ttl(self, seconds):
        """The session timeout in seconds, for tokens issued before and after."""
        self.sessions.set_ttl(float(seconds))
        return {"token_ttl": self.sessions.ttl}

    # -- used by the server --------------------------------------------------------------------

    def api_usage(self):
        with self._lock:
            return self._usage, self.daily_limit

    def count_call(self, kind):
        """Count one API call against the daily allowance, or refuse it (403 TotalRequests)."""
        with self._lock:
            if self._usage >= self.daily_limit:
                self._rejected["TotalRequests"] += 1
                raise request_limit("TotalRequests")
            self._usage += 1
            self._api_calls[kind] += 1

    def enter_flight(self):
        """Admit one data request, or False when ``max_in_flight`` are already running."""
        with self._lock:
            if self._in_flight >= self.max_in_flight:
                self._rejected["ConcurrentPerOrgLongTxn"] += 1
                return False
            self._in_flight += 1
            self._in_flight_peak = max(self._in_flight_peak, self._in_flight)
            return True

    def leave_flight(self):
        with self._lock:
            self._in_flight -= 1

    def note_rejected(self, reason):
        with self._lock:
            self._rejected[reason] += 1

    def note_status(self, status):
        with self._lock:
            self._responses[status] += 1

    def match_fault(self, method, path):
        return self._faults.match(method, path)

    def delay(self):
        return self._faults.delay()

    def sleep(self, seconds):
        """Hold the calling request ``seconds``; True when the org is stopping meanwhile."""
        if seconds <= 0:
            return self._stopping.is_set()
        return self._stopping.wait(seconds)

    def count_token_request(self, grant_type):
        """Count a request to the token endpoint (faulted ones too) by its grant type."""
        with self._lock:
            self._token_requests[auth.GRANT_NAMES.get(grant_type, "other")] += 1

    def token_request(self, form):
        """``(status, body)`` for a token request's parameters."""
        try:
            return 200, self.sessions.grant(form, self.url)
        except auth.OAuthError as exc:
            with self._lock:
                self._token_errors[exc.body["error"]] += 1
            return exc.status, exc.body

    def dispatch_subrequest(self, parent, method, url, body, headers, all_or_none):
        """Run one Composite subrequest in-process (not counted, same session and version)."""
        path, _, query = url.partition("?")
        segments = api.split_path(path)
        if len(segments) < 3 or segments[:2] != ["services", "data"]:
            raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
        version = api.parse_version(segments[2])
        if version is None:
            raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
        _, handler, args = api.route(segments[3:], method)
        call = Call(
            org=self,
            method=method,
            version=version,
            segments=segments[3:],
            query=api.query_params(query),
            headers={key.lower(): value for key, value in headers.items()},
            parsed=body,
            subrequest=True,
            all_or_none=all_or_none,
        )
        return handler(call, *args)

    # -- internals -----------------------------------------------------------------------------

    def _restore_initial(self):
        initial = self._initial
        with self._lock:
            self.daily_limit = initial["daily_limit"]
            self.max_in_flight = initial["max_in_flight"]
            self._usage = 0
            self._api_calls = collections.Counter()
            self._token_requests = collections.Counter()
            self._token_errors = collections.Counter()
            self._rejected = collections.Counter()
            self._responses = collections.Counter()
            self._in_flight = getattr(self, "_in_flight", 0)
            self._in_flight_peak = self._in_flight
        self.sessions.set_ttl(initial["token_ttl"])
        self.bulk.configure(**initial["bulk"])
        self._faults.clear()
        self._faults.fired_total = 0
        self._faults.set_latency(initial["latency_ms"], initial["jitter_ms"])
        for spec in initial["faults"]:
            self._faults.add(spec)

    def _seed(self):
        """Every org has a standard price book; it keeps its id across resets."""
        obj = self.schema.get("Pricebook2")
        if obj is None:
            return
        with self.store.transaction():
            values = validation.prepare(
                self.store, obj, {"Name": "Standard Price Book", "IsActive": True}
            )
            # IsStandard is not writable through the API; the org sets it on its own price book.
            values["IsStandard"] = True
            record = self.store.insert(obj.name, values, record_id=self.standard_pricebook_id)
        self.standard_pricebook_id = record["Id"]
