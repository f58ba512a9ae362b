"""Test doubles for whole services: a local Salesforce org, a local Magento store, and the demo.

What ``django.test`` and ``flask.testing`` are for a web app's requests, this subpackage is for
the two services magsync sits between. Each stand-in is a real HTTP server that answers as the
real service does on every point magsync relies on (its wire format, authentication, errors,
limits and faults), so tests, the demo, chaos runs and benchmarks exercise magsync's real
clients over real sockets, with no mocks and no network access:

:mod:`magsync.sandbox.salesforce`
    A Salesforce org: HTTPS with its own CA, the OAuth 2.0 JWT bearer and refresh-token grants,
    the REST API (upsert by external id, describe, SOQL, sObject Collections, Composite),
    validation rules, multi-currency, the daily allowance, the concurrent-request cap, and
    injected latency and faults. ``SandboxOrg`` in-process, ``magsync sandbox salesforce`` as
    a process, ``ControlClient`` to steer one over HTTP.
:mod:`magsync.sandbox.magento`
    A Magento 2 store: the orders REST API signed with OAuth 1.0a, realistic seeded orders
    through their lifecycle, and a signed ``sales_order_save_after`` webhook (or Adobe I/O
    Events) for every save, with duplicates, drops, reordering and bursts on request.
    ``SandboxStore`` in-process, ``magsync sandbox magento`` as a process, ``ControlClient``.
:mod:`magsync.sandbox.stack`
    ``magsync stack`` (``scripts/run``): web, worker and Flower, with the stand-ins for
    whatever is not configured; a demo that keeps to a broker namespace of its own.

Nothing the service runs imports this subpackage: the ``magsync sandbox`` and ``magsync stack``
commands load it only when called. What only it needs is in the ``sandbox`` extra
(``pip install magsync[sandbox]``).
"""
