"""The sandbox Salesforce org: a local, wire-faithful stand-in for the Salesforce REST API.

Every test, demo and benchmark of magsync runs against it, so it behaves like a real org on the
points magsync depends on: HTTPS with its own CA, the OAuth 2.0 JWT bearer and refresh-token
grants, the REST data API (sObjects, upsert by external id, describe, SOQL queries with paging,
limits, sObject Collections, Composite), an org's validation rules, the daily API allowance and
the concurrent-request cap, and injected latency and faults.

Run it::

    magsync sandbox salesforce --host 127.0.0.1 --port 8443 --state-dir .sandbox/salesforce
        [--token-ttl S] [--daily-limit N] [--max-in-flight N] [--latency-ms X --jitter-ms Y]
        [--schema variant.json] [--fault 'kind=unavailable method=PATCH count=3'] ...

It prints ``SALESFORCE_LOGIN_URL``, ``SALESFORCE_CLIENT_ID``, ``SALESFORCE_USERNAME``,
``SALESFORCE_PRIVATE_KEY_PATH`` and ``SALESFORCE_CA_BUNDLE`` as ``KEY=value`` lines, then serves
until SIGTERM or SIGINT. Or in-process::

    with SandboxOrg(state_dir=tmp_path) as org:        # port 0: a free port
        session = requests.Session(); session.verify = str(org.ca_path)
        sf = Salesforce(instance_url=org.url, session_id=token, session=session, version="58.0")

Where things live:

- ``org.py``: ``SandboxOrg``, its lifecycle and control surface (also over HTTP, ``control.py``,
  which documents the ``/_sandbox/`` routes and ``ControlClient`` for other processes).
- ``server.py``: TLS and HTTP, and the path of a request (faults, in-flight cap, latency,
  session, allowance, ``Sforce-Limit-Info``).
- ``auth.py``: the token endpoint and sessions (grants, error descriptions, TTL).
- ``api.py``: the data API routes and handlers (sObjects, upsert, queries, Collections,
  Composite) and this org's size limits.
- ``validation.py``, ``store.py``, ``soql.py``, ``schema.py`` + ``schema.json``, ``ids.py``:
  the org's rules, records, query language, schema data and record ids.
- ``faults.py``: the fault-rule format and kinds; ``certs.py``: the state directory's files.

The JWT ``aud`` must be ``https://login.salesforce.com`` or ``https://test.salesforce.com`` even
though the token request goes to the sandbox's URL, as with a My Domain login URL.
"""

from magsync.sandbox.salesforce.control import ControlClient
from magsync.sandbox.salesforce.org import SandboxOrg

__all__ = ["ControlClient", "SandboxOrg"]
