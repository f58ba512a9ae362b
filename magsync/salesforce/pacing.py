"""The pace of one worker process's Salesforce calls: a token bucket before each, the org's usage
after each.

Every request to the org's data API goes through ``RestClient``, which passes it through the
process's ``Pacer``:

- before the request, ``Pacer.before_call()`` takes a token from its ``TokenBucket``
  (``SALESFORCE_RATE_LIMIT`` calls per second, per worker process), waiting for one when calls
  come faster than that. A wait longer than ``max_wait`` is not made: the call fails as a
  ``RetryLater`` (reason ``rate_limited``) and is not sent;
- after the answer, ``Pacer.observed(header)`` keeps the org's usage the answer reported
  (``Sforce-Limit-Info: api-usage=N/M``) and hands it to its listeners
  (``magsync.sync.pacing`` shares it with the other processes and decides what may run).

Only data API requests are paced: they are what the org's daily allowance counts. The token
endpoint is not part of that allowance (logins have their own hourly limit, and
``TokenProvider`` already spaces its requests).

The rate can be changed while the worker runs (``magsync rate-limit``). With Celery's prefork
pool the remote-control command runs in the worker's main process while the calls are made in
its pool processes, so the rate lives in a ``SharedRate``: one number in shared memory, created
in the main process before the pool forks (and so inherited by every pool process, replacements
too), written by the command and read by each pool process before its next call.
"""

import ctypes
import logging
import math
import multiprocessing
import os
import re
import threading
import time
from dataclasses import dataclass

from magsync.errors import RetryLater

log = logging.getLogger(__name__)

_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
# The org's figure, not an app's (``per-app-api-usage=17/250(appName=...)`` may come with it).
_USAGE = re.compile(r"(?:^|[;,\s])api-usage=(\d+)/(\d+)")


def calls_per_second(rate):
    """``20/s``, ``600/m``, ``10000/h`` or ``5`` (per second) as calls per second (> 0).

    Raises ``ValueError`` for anything else, zero included.
    """
    match = _RATE.fullmatch(str(rate))
    if not match:
        raise ValueError(f"{rate!r} must look like 20/s, 600/m or 10000/h")
    value = float(match.group(1)) / _PER[match.group(2) or "s"]
    if value <= 0:
        raise ValueError(f"{rate!r} must be more than 0 calls")
    return value


class TokenBucket:
    """A thread-safe token bucket: ``rate`` tokens a second, at most ``burst`` saved up.

    ``burst`` defaults to one second of calls (at least one), so over any stretch of ``t``
    seconds at most ``burst + rate * t`` tokens are handed out. Waiting callers queue: each
    takes its token when it starts waiting (the bucket may go into debt) and sleeps outside the
    lock until its turn. ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(self, rate, burst=None, clock=time.monotonic, sleep=time.sleep):
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate, self._burst = self._check(rate, burst)
        self._tokens = self._burst
        self._stamp = clock()

    @staticmethod
    def _check(rate, burst):
        rate = float(rate)
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError("rate must be a positive number of calls per second")
        burst = max(1.0, rate) if burst is None else float(burst)
        if not burst >= 1:
            raise ValueError("burst must be at least 1")
        return rate, burst

    @property
    def rate(self):
        return self._rate

    @property
    def burst(self):
        return self._burst

    def _refill(self, now):
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def acquire(self, max_wait=None):
        """Take one token, sleeping until it is due; returns the seconds slept.

        Returns None, without taking a token or sleeping, when the token is due later than
        ``max_wait`` seconds from now.
        """
        with self._lock:
            self._refill(self._clock())
            wait = max(0.0, (1.0 - self._tokens) / self._rate)
            if max_wait is not None and wait > max_wait:
                return None
            self._tokens -= 1.0
        if wait > 0:
            self._sleep(wait)
        return wait

    def set_rate(self, rate, burst=None):
        """Change the rate (and the burst, by default one second of the new rate).

        Tokens saved up beyond the new burst are dropped; callers already waiting keep their
        turn.
        """
        rate, burst = self._check(rate, burst)
        with self._lock:
            self._refill(self._clock())
            self._rate, self._burst = rate, burst
            self._tokens = min(self._tokens, burst)


class SharedRate:
    """Calls per second in shared memory: written by one process, read by its forked children.

    Make it before the pool forks. A double is written with one aligned store, so a reader sees
    the old rate or the new one; there is no lock a killed process could leave taken.
    """

    def __init__(self, rate):
        self._value = multiprocessing.RawValue(ctypes.c_double, float(rate))

    def get(self):
        return self._value.value

    def set(self, rate):
        rate = float(rate)
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError("rate must be a positive number of calls per second")
        self._value.value = rate


@dataclass(frozen=True)
class ApiUsage:
    """The org's daily API usage as one answer reported it: ``used`` of ``limit`` calls."""

    used: int
    limit: int

    @property
    def fraction(self):
        """Share of the allowance used (1.0 for an org reporting no allowance)."""
        return self.used / self.limit if self.limit > 0 else 1.0

    @classmethod
    def parse(cls, header):
        """From ``Sforce-Limit-Info`` (``api-usage=10018/100000; api-bursts=1/750``); None when
        the header carries no usage."""
        match = _USAGE.search(header or "")
        return cls(int(match.group(1)), int(match.group(2))) if match else None


class Pacer:
    """Before and after every Salesforce call of one process; thread-safe.

    Without a bucket it paces nothing and only keeps the usage. With a ``shared_rate``, the
    bucket follows it: a change is picked up before the next call and logged.
    """

    def __init__(self, bucket=None, shared_rate=None, max_wait=None):
        self.bucket = bucket
        self.shared_rate = shared_rate
        self.max_wait = max_wait
        self._listeners = []
        self._latest = None
        self._lock = threading.Lock()

    @classmethod
    def for_worker(cls, settings, shared_rate=None):
        """The pacer of a worker process: ``SALESFORCE_RATE_LIMIT`` (or the shared rate), and
        waits bounded by ``SALESFORCE_TIMEOUT``."""
        rate = (
            shared_rate.get() if shared_rate else calls_per_second(settings.salesforce_rate_limit)
        )
        return cls(TokenBucket(rate), shared_rate, max_wait=settings.sf_timeout)

    @property
    def latest(self):
        """The ``ApiUsage`` of this process's newest answer that reported one (None before)."""
        return self._latest

    def listen(self, callback):
        """Call ``callback(ApiUsage)`` after every answer that reports the usage."""
        self._listeners.append(callback)

    def before_call(self):
        """Wait for this call's turn; ``RetryLater`` when the wait would pass ``max_wait``."""
        if self.bucket is None:
            return
        self._follow_shared_rate()
        if self.bucket.acquire(self.max_wait) is None:
            raise RetryLater(
                f"Salesforce calls are limited to {self.bucket.rate:g} a second in this process",
                reason="rate_limited",
                system="magsync",
                retry_after=math.ceil(1.0 / self.bucket.rate),
            )

    def observed(self, header):
        """Keep the usage an answer's ``Sforce-Limit-Info`` reports and tell the listeners.

        Never raises: a listener's failure is logged, and the call it followed stands.
        """
        usage = ApiUsage.parse(header)
        if usage is None:
            return
        self._latest = usage
        for callback in self._listeners:
            try:
                callback(usage)
            except Exception:
                log.exception("salesforce api usage listener failed")

    def _follow_shared_rate(self):
        if self.shared_rate is None:
            return
        rate = self.shared_rate.get()
        with self._lock:
            if rate == self.bucket.rate:
                return
            self.bucket.set_rate(rate)
        log.info(
            "salesforce call rate changed", extra={"calls_per_second": rate, "pid": os.getpid()}
        )


_installed = {}
_installed_lock = threading.Lock()


def install(pacer):
    """Make ``pacer`` the one every ``RestClient`` of this process uses by default."""
    with _installed_lock:
        _installed.clear()
        _installed[os.getpid()] = pacer


def process_pacer():
    """This process's pacer: the installed one, else (a check, a script) one that paces nothing.

    A forked child does not inherit its parent's: it installs its own or paces nothing.
    """
    pid = os.getpid()
    with _installed_lock:
        pacer = _installed.get(pid)
        if pacer is None:
            _installed.clear()
            pacer = _installed[pid] = Pacer()
        return pacer
