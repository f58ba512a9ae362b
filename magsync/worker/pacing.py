"""A worker's pacing: the rate ``magsync rate-limit`` changes, and each process's pacers.

``shared_rate(settings)`` is made by ``create_worker_app`` in the worker's main process, before
the pool forks: a ``SharedRate`` every pool process inherits. The remote-control command
``magsync_rate_limit`` runs in the main process (Celery's control commands do) and writes it;
each pool process's token bucket reads it before its next Salesforce call. A worker restart
brings back ``SALESFORCE_RATE_LIMIT``.

``start(app, settings, services)`` is called once in each process that syncs orders: it
installs the process's ``Pacer`` (every ``RestClient`` call waits on its bucket and reports the
usage it sees) and ``QuotaPacing`` (what the org's API usage allows, shared through the
process's ledger and read again with ``GET /limits`` while work is paused), and returns the
latter.
"""

import logging

from celery.worker.control import control_command, nok, ok

from magsync.salesforce import pacing as calls
from magsync.sync import pacing as quota

log = logging.getLogger(__name__)

RATE_LIMIT_COMMAND = "magsync_rate_limit"


def shared_rate(settings):
    """The worker's Salesforce call rate, shared with the pool processes it will fork."""
    return calls.SharedRate(calls.calls_per_second(settings.salesforce_rate_limit))


def start(app, settings, services):
    """Install this process's pacers; the ``QuotaPacing``. ``services()`` gives the process's
    ``Services`` (built on first use)."""
    pacer = calls.Pacer.for_worker(settings, getattr(app, "magsync_rate", None))
    view = quota.QuotaPacing(
        settings, ledger=lambda: services().ledger, probe=lambda: _read_limits(services())
    )
    pacer.listen(view.observe)
    calls.install(pacer)
    quota.install(view)
    return view


@control_command(name=RATE_LIMIT_COMMAND, args=[("rate", str)], signature="<rate>")
def magsync_rate_limit(state, rate):
    """Set the Salesforce call rate of each of this worker's processes (5/s, 600/m, 10000/h)."""
    shared = getattr(state.consumer.app, "magsync_rate", None)
    if shared is None:
        return nok("this worker does not pace Salesforce calls")
    try:
        value = calls.calls_per_second(rate)
    except ValueError as exc:
        return nok(str(exc))
    shared.set(value)
    log.info("salesforce call rate set", extra={"rate": rate, "calls_per_second": value})
    return ok(f"salesforce call rate set to {rate} per worker process ({value:g} calls a second)")


def _read_limits(services):
    rest = services.writer.rest
    return rest.call("GET", rest.data_path("limits"))
