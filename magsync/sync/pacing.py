"""Quota-aware pacing: what the org's daily API usage lets magsync spend.

Salesforce reports in every answer how much of the org's rolling 24-hour allowance is used
(``Sforce-Limit-Info: api-usage=N/M``: the whole org's count, every integration's calls). Each
worker process keeps the latest figure it saw and shares it through the ledger database (one row,
``ledger_api_usage``); every process decides on the newest figure any process saw:

===================================  ===============  ===================  ===========
usage of the allowance               live orders      backfill, reconcile  batch linger
===================================  ===============  ===================  ===========
under ``MAGSYNC_API_BUDGET`` (0.8)   run              run                  1x
from the budget                      run              pause                4x
from ``MAGSYNC_API_HALT`` (0.95)     wait             pause                4x
===================================  ===============  ===================  ===========

``allow(kind)`` answers for ``live``, ``backfill`` and ``reconcile`` work, ``linger_factor()``
says how much longer the coalescer should wait to fill a batch, and ``wait_time("live")`` is how
long an order should wait in RabbitMQ (the task shell puts it back with that countdown, its
attempts and retry window untouched, as it does while the circuit breaker is open).

Usage changes only as answers report it, and paused work makes no calls: while work is paused
and the newest figure is older than ``MAGSYNC_API_PROBE_INTERVAL`` seconds, one caller of all
processes (the claim is made in the ledger) reads it again with the ``probe`` call (the worker's
is ``GET /limits``, one API call) and decides on its answer. When the probe cannot read it (no
probe, or an answer without the header), that caller is let through: its own calls read it.

The start of a halt (usage past ``MAGSYNC_API_HALT``) is reported to Sentry once for all
workers: by the process whose figure moved the shared usage past the threshold (the ledger row's
``halted_since`` changes in one transaction); its end is logged. While usage is above the budget
every process logs it once a minute. When the ledger cannot be used the process decides on its
own figure.

The worker installs its process's ``QuotaPacing`` (``install``); the module-level ``allow``,
``linger_factor`` and ``wait_time`` consult it, and let everything run at 1x without one.
"""

import datetime as dt
import logging
import os
import threading
import time
from dataclasses import dataclass

from magsync import alerts

log = logging.getLogger(__name__)

KINDS = ("live", "backfill", "reconcile")
# How much longer live orders linger for a batch while usage is above the budget.
BUSY_LINGER_FACTOR = 4.0
# A process writes an unchanged zone's figure to the ledger at most this often, and reads the
# ledger's at most this often (seconds); a figure that changes zone is written at once.
SHARE_INTERVAL = 5.0
READ_INTERVAL = 5.0
LOG_INTERVAL = 60.0


@dataclass(frozen=True)
class Usage:
    """``used`` of ``limit`` calls, as an answer received at ``observed_at`` (epoch seconds)
    reported it."""

    used: int
    limit: int
    observed_at: float

    @property
    def fraction(self):
        return self.used / self.limit if self.limit > 0 else 1.0


def decide(kind, fraction, budget, halt):
    """True when work of ``kind`` may call Salesforce with ``fraction`` of the allowance used
    (None: not known yet, so it may)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of work {kind!r} (one of {', '.join(KINDS)})")
    if fraction is None:
        return True
    return fraction < (halt if kind == "live" else budget)


def linger_for(fraction, budget):
    """The factor of the batch linger at ``fraction`` of the allowance used."""
    return BUSY_LINGER_FACTOR if fraction is not None and fraction >= budget else 1.0


def _zone(fraction, budget, halt):
    return 0 if fraction < budget else 1 if fraction < halt else 2


def _naive_utc(epoch):
    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None)


def _epoch(naive):
    return naive.replace(tzinfo=dt.UTC).timestamp()


class QuotaPacing:
    """One process's view of the org's API usage and what it allows; thread-safe.

    ``ledger`` is the ``Ledger``, or a function returning it (the worker builds it lazily);
    ``probe`` a function making one Salesforce call whose answer reaches ``observe``;
    ``clock`` gives wall-clock epoch seconds (figures are compared across hosts); ``alert``
    reports the start of a halt.
    """

    def __init__(
        self,
        settings,
        ledger,
        probe=None,
        clock=time.time,
        alert=alerts.capture_api_usage_halt,
    ):
        self.budget = settings.api_budget
        self.halt = settings.api_halt
        self.probe_interval = settings.api_probe_interval
        self._ledger = ledger if callable(ledger) else (lambda: ledger)
        self._probe_call = probe
        self._clock = clock
        self._alert = alert
        self._lock = threading.Lock()
        self._reading = threading.Lock()
        self._local = None
        self._observed = 0  # answers observed, so a probe can tell whether its answer came
        self._shared = None
        self._shared_zone = None
        self._next_share = self._next_read = self._next_log = float("-inf")
        self._last_probe = float("-inf")

    # -- what the answers report --------------------------------------------------------------

    def observe(self, api_usage):
        """Keep an answer's usage (``magsync.salesforce.pacing.ApiUsage``) and share it."""
        now = self._clock()
        usage = Usage(api_usage.used, api_usage.limit, now)
        zone = _zone(usage.fraction, self.budget, self.halt)
        with self._lock:
            self._local = usage
            self._observed += 1
            due = zone != self._shared_zone or now >= self._next_share
            if due:
                self._shared_zone, self._next_share = zone, now + SHARE_INTERVAL
        if due:
            self._share(usage)
        self._report(usage)

    def view(self):
        """The newest ``Usage`` this process saw or the ledger holds (None: none yet)."""
        # The threads of a worker that starts with a queue full of orders all ask at once: they
        # wait for the one reading the ledger, rather than decide on no figure at all.
        with self._reading:
            now = self._clock()
            if now >= self._next_read:
                self._next_read = now + READ_INTERVAL
                shared = self._read_shared()
                with self._lock:
                    self._shared = shared or self._shared
        with self._lock:
            known = [u for u in (self._local, self._shared) if u is not None]
        return max(known, key=lambda u: u.observed_at) if known else None

    # -- decisions ----------------------------------------------------------------------------

    def allow(self, kind):
        """True when work of ``kind`` may call Salesforce now (see the module)."""
        usage = self.view()
        if self._allows(kind, usage):
            return True
        self._report(usage)
        if not self._claim_probe(usage):
            return False
        fresh = self._read_again()
        return True if fresh is None else self._allows(kind, fresh)

    def wait_time(self, kind="live"):
        """Seconds work of ``kind`` should wait before asking again; 0 means go now."""
        return 0.0 if self.allow(kind) else self.probe_interval

    def linger_factor(self):
        """How many times the usual linger a batch should wait to fill (see the module)."""
        usage = self.view()
        return linger_for(usage.fraction if usage else None, self.budget)

    # -- the ledger ---------------------------------------------------------------------------

    def _use_ledger(self, action, what):
        """``action(ledger)``, or None when the ledger cannot be used (logged)."""
        try:
            ledger = self._ledger()
            ledger.ready()
            return action(ledger)
        except Exception as exc:
            log.warning(
                "salesforce api usage not shared", extra={"step": what, "cause": str(exc)[:200]}
            )
            return None

    def _share(self, usage):
        change = self._use_ledger(
            lambda ledger: ledger.share_api_usage(
                usage.used, usage.limit, _naive_utc(usage.observed_at), self.halt
            ),
            "share",
        )
        extra = {"api_used": usage.used, "api_limit": usage.limit, "halt": self.halt}
        if change == "halted":
            log.error("salesforce api usage past the halt threshold, live orders wait", extra=extra)
            self._alert(usage.used, usage.limit, self.halt)
        elif change == "resumed":
            log.info(
                "salesforce api usage under the halt threshold, live orders resume", extra=extra
            )

    def _read_shared(self):
        shared = self._use_ledger(lambda ledger: ledger.api_usage(), "read")
        if shared is None or shared.observed_at is None:
            return None
        return Usage(shared.used, shared.limit, _epoch(shared.observed_at))

    def _allows(self, kind, usage):
        return decide(kind, usage.fraction if usage else None, self.budget, self.halt)

    def _read_again(self):
        """The figure the probe call's answer reported; None when it reported none newer."""
        if self._probe_call is None:
            return None
        with self._lock:
            before = self._observed
        try:
            self._probe_call()
        except Exception as exc:  # an error answer may still have reported the usage
            log.warning("salesforce api usage probe failed", extra={"cause": str(exc)[:200]})
        with self._lock:
            return self._local if self._observed > before else None

    def _claim_probe(self, usage):
        """True for the one caller of all processes that reads a stale figure again."""
        now = self._clock()
        if now - usage.observed_at < self.probe_interval:
            return False
        claimed = self._use_ledger(
            lambda ledger: ledger.claim_api_probe(_naive_utc(now), self.probe_interval), "probe"
        )
        if claimed is None:  # no ledger: this process probes on its own
            with self._lock:
                claimed = now - self._last_probe >= self.probe_interval
                if claimed:
                    self._last_probe = now
        if claimed:
            log.info("salesforce api usage probe", extra={"api_used": usage.used})
        return claimed

    def _report(self, usage):
        """Log the usage once a minute while it is above the budget."""
        if usage is None or usage.fraction < self.budget:
            return
        now = self._clock()
        with self._lock:
            if now < self._next_log:
                return
            self._next_log = now + LOG_INTERVAL
        paused = (
            "backfill, reconcile, live" if usage.fraction >= self.halt else "backfill, reconcile"
        )
        log.warning(
            "salesforce api usage above budget",
            extra={
                "api_used": usage.used,
                "api_limit": usage.limit,
                "usage": round(usage.fraction, 4),
                "budget": self.budget,
                "halt": self.halt,
                "paused": paused,
            },
        )


_installed = {}


def install(pacing):
    """Make ``pacing`` this process's (what ``allow``, ``linger_factor``, ``wait_time`` use).

    A forked child does not inherit it.
    """
    _installed.clear()
    if pacing is not None:
        _installed[os.getpid()] = pacing


def current():
    """This process's ``QuotaPacing``, or None."""
    return _installed.get(os.getpid())


def allow(kind):
    """True when work of ``kind`` (``live``, ``backfill``, ``reconcile``) may call Salesforce."""
    pacing = current()
    if pacing is None:
        decide(kind, None, 1.0, 1.0)  # still refuses an unknown kind
        return True
    return pacing.allow(kind)


def linger_factor():
    """How many times its usual linger the coalescer should wait to fill a batch (1.0 or more)."""
    pacing = current()
    return 1.0 if pacing is None else pacing.linger_factor()


def wait_time(kind="live"):
    """Seconds work of ``kind`` should wait before asking again (0: go now)."""
    pacing = current()
    if pacing is None:
        decide(kind, None, 1.0, 1.0)
        return 0.0
    return pacing.wait_time(kind)
