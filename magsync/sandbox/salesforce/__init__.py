"""The sandbox Salesforce org: a local, wire-faithful stand-in for the Salesforce REST API.

Every test, demo and benchmark of magsync runs against it, so it behaves like a real org on the
points magsync depends on: HTTPS with its own CA, the OAuth 2.0 JWT bearer and refresh-token
grants, the REST data API (sObjects, upsert by external id, describe, SOQL queries with paging,
limits, sObject Collections, Composite), Bulk API 2.0 ingest jobs (CSV, processed in the
background), an org's validation rules, the daily API allowance and the concurrent-request cap,
and injected latency and faults.

Run it::

    magsync sandbox salesforce --host 127.0.0.1 --port 8443 --state-dir .sandbox/salesforce
        [--token-ttl S] [--daily-limit N] [--max-in-flight N] [--latency-ms X --jitter-ms Y]
        [--schema variant.json] [--fault 'kind=unavailable method=PATCH count=3'] ...
        [--bulk-latency S] [--bulk-daily-batches N] [--bulk-daily-records N]

It prints ``SALESFORCE_LOGIN_URL``, ``SALESFORCE_CLIENT_ID``, ``SALESFORCE_USERNAME``,
``SALESFORCE_PRIVATE_KEY_PATH`` and ``SALESFORCE_CA_BUNDLE`` as ``KEY=value`` lines, then serves
until SIGTERM or SIGINT. Or in-process::

    with SandboxOrg(state_dir=tmp_path) as org:        # port 0: a free port
        session = requests.Session(); session.verify = str(org.ca_path)
        sf = Salesforce(instance_url=org.url, session_id=token, session=session, version="58.0")

Control it in-process (``org.add_fault(...)``, ``org.set_latency(...)``, ``org.expire_tokens()``,
``org.revoke_user()`` / ``restore_user()``, ``org.set_limits(...)``, ``org.set_token_ttl(...)``,
``org.set_bulk(latency=, daily_batches=, daily_records=)``, ``org.bulk_jobs()``,
``org.records(...)``, ``org.stats()``, ``org.reset_stats()``, ``org.reset()``) or, from another
process, over HTTP on the org's own port, without a session, with ``ControlClient(url, ca_path)``
(same methods)::

    GET  /_sandbox/settings | /_sandbox/stats | /_sandbox/records/{sobject} | /_sandbox/faults
         /_sandbox/bulk/jobs
    POST /_sandbox/reset | /_sandbox/stats/reset | /_sandbox/records/{sobject} | /_sandbox/faults
         /_sandbox/latency | /_sandbox/tokens/expire | /_sandbox/tokens | /_sandbox/refresh-tokens
         /_sandbox/token-ttl | /_sandbox/limits | /_sandbox/users/{username}/revoke|restore
         /_sandbox/bulk
    DELETE /_sandbox/faults | /_sandbox/faults/{id}

A fault rule (``faults.py``) matches a method and a path prefix or regex, fires ``count`` times
(after letting ``after`` requests through) or with a ``probability``, and answers as its
``kind``: ``unavailable`` (503 HTML), ``unknown_exception`` (500), ``unable_to_lock_row`` (400),
``throttled`` (429), ``request_limit`` (403), ``status`` (any), ``hang`` (hold ``seconds``, then
close, respond or proceed) or ``drop`` (close without answering)::

    org.add_fault(kind="unavailable", method="PATCH", path="/services/data/", count=3)
    --fault 'kind=hang seconds=30 path=/services/oauth2/token'

Where things live:

- ``org.py``: ``SandboxOrg``, its lifecycle and control surface (also over HTTP, ``control.py``,
  which documents the ``/_sandbox/`` routes and ``ControlClient`` for other processes).
- ``server.py``: TLS and HTTP, and the path of a request (faults, in-flight cap, latency,
  session, allowance, ``Sforce-Limit-Info``).
- ``auth.py``: the token endpoint and sessions (grants, error descriptions, TTL).
- ``api.py``: the data API routes and handlers (sObjects, upsert, queries, Collections,
  Composite) and this org's size limits; ``calls.py``: what a handler receives and returns
  (``Call``, ``Answer``); ``records.py``: the record writes the REST and Bulk APIs share.
- ``bulk.py``: Bulk API 2.0 ingest (jobs, their states, background processing, results, the
  rolling-24-hour allocations); ``bulk_csv.py``: Salesforce's CSV rules.
- ``validation.py``, ``store.py``, ``soql.py``, ``schema.py`` + ``schema.json``, ``ids.py``:
  the org's rules, records, query language, schema data and record ids.
- ``faults.py``: the fault-rule format and kinds; ``certs.py``: the state directory's files.

The JWT ``aud`` must be ``https://login.salesforce.com`` or ``https://test.salesforce.com`` even
though the token request goes to the sandbox's URL, as with a My Domain login URL.
"""

from magsync.sandbox.salesforce.control import ControlClient
from magsync.sandbox.salesforce.org import SandboxOrg

__all__ = ["ControlClient", "SandboxOrg"]
