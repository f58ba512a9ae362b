"""A circuit breaker in front of Salesforce, one per worker process.

Closed: calls go through; ``threshold`` transient failures in a row open it. Open: no call is
made for ``cooldown`` seconds; the tasks that arrive meanwhile are put back in the broker to wait
(their retry budget untouched). Half-open: one task probes; its success closes the circuit, its
failure opens it for another cool-down. Every change of state is logged.

Each worker process judges Salesforce from its own calls: processes do not share state, so in an
outage every process probes once per cool-down at most.
"""

import logging
import threading
import time

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(self, threshold=5, cooldown=30.0, clock=time.monotonic):
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.state = CLOSED
        self.failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._lock = threading.Lock()

    def wait_time(self):
        """Seconds a task must wait before calling; 0 means call now (possibly as the probe)."""
        with self._lock:
            if self.state == CLOSED:
                return 0.0
            remaining = self._opened_at + self.cooldown - self.clock()
            if remaining > 0:
                return remaining
            if self._probing:
                # Someone is already probing: wait a moment for its verdict.
                return min(self.cooldown, 5.0)
            if self.state == OPEN:
                self._change(HALF_OPEN)
            self._probing = True
            return 0.0

    def success(self):
        with self._lock:
            self.failures = 0
            self._probing = False
            if self.state != CLOSED:
                self._change(CLOSED)

    def failure(self):
        with self._lock:
            self.failures += 1
            self._probing = False
            if self.state == HALF_OPEN or (
                self.state == CLOSED and self.failures >= self.threshold
            ):
                self._opened_at = self.clock()
                self._change(OPEN)

    def release(self):
        """The task that was let through learned nothing about Salesforce (it never called it)."""
        with self._lock:
            self._probing = False

    def _change(self, state):
        previous, self.state = self.state, state
        level = logging.WARNING if state == OPEN else logging.INFO
        log.log(
            level,
            "salesforce circuit " + state.replace("_", "-"),
            extra={
                "previous": previous,
                "failures": self.failures,
                "cooldown": self.cooldown,
            },
        )
