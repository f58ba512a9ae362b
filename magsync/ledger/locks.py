"""Locks on one order or one customer, held across worker processes and, on PostgreSQL, hosts.

A lock session (``with ledger.locks() as locks: locks.acquire("order", "000000123")``) takes any
number of named locks and releases them all when it ends; a lock is never released early.
``locks.acquire_many(names)`` takes many at once, for a batch of orders, in one holder: one
connection (PostgreSQL) or one process's file descriptor (SQLite), never one per order.
``locks.try_acquire(kind, value)`` takes a lock only if it is free at once (a reconcile pass
takes its store's so; a second pass finds it held and skips instead of waiting).

Every session takes its locks in one global order (``lock_order``): order locks first, an edited
order before the order it replaced (deeper edits first: ``<n>-2`` before ``<n>-1`` before
``<n>``), then customers, then products (a SKU's creation, line items); within a level by key.
A single order's session (the order, its parent, later its customer, then its new SKUs) and a
batch's session (all its orders and parents, then all its customers, then SKUs) follow the same
order, so no two sessions can wait on each other in a cycle.
``MAGSYNC_LOCK_TIMEOUT`` bounds every wait anyway, and a wait that times out raises
``LockTimeout``, a ``RetryLater``.

PostgreSQL: transaction-level advisory locks (``pg_advisory_xact_lock``) taken in one open
transaction on a connection of the session's own. Every worker on every host that uses the same
database contends for the same keys. Ending the session ends that transaction, which releases the
locks; a worker that dies loses its connection, and PostgreSQL ends the transaction and releases
them too. No lock can leak into the connection pool, because pooled connections are rolled back
on return.

SQLite (one host): POSIX record locks (``fcntl``) on one byte per key of a lock file beside the
database. The kernel releases a process's record locks when the process exits, however it exits.
Record locks belong to a process, not a thread, so threads of one process are kept apart by an
in-process lock per key as well.
"""

import errno
import fcntl
import hashlib
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from magsync.errors import RetryLater

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout expires
_OFFSET_SPACE = 2**62  # byte offsets in the lock file; far below off_t's limit


class LockTimeout(RetryLater):
    """Another worker held the order (or customer) longer than ``MAGSYNC_LOCK_TIMEOUT``."""

    reason = "lock_timeout"
    system = "magsync"


def _busy(kind, value):
    # A customer's lock is named by the buyer's email: it stays out of the message, which
    # reaches logs and the ledger's history.
    name = f"order {value}" if kind == "order" else f"a {kind}'s lock"
    return f"{name} is busy in another worker"


def lock_key(kind, value):
    """A signed 64-bit key for ``kind`` and ``value`` (PostgreSQL's advisory lock key space).

    Two different names may share a key; that only makes two unrelated orders wait for each
    other, never lets two holders in at once.
    """
    digest = hashlib.blake2b(f"magsync:{kind}:{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class LockName:
    """A lock to take: ``kind`` (``order`` or ``customer``), ``value``, and for an order its
    edit depth (0 for an order no edit made, 1 for ``<n>-1``, ...)."""

    kind: str
    value: str
    depth: int = 0

    @property
    def key(self):
        return lock_key(self.kind, self.value)


def lock_order(name):
    """The sort key of ``name`` in the global lock order (see the module)."""
    if name.kind == "order":
        return (0, -name.depth, name.key)
    if name.kind == "product":
        return (2, 0, name.key)
    return (1, 0, name.key)


def _ordered(names):
    """``names`` without repeated keys, in the global lock order."""
    unique = {}
    for name in names:
        unique.setdefault(name.key, name)
    return sorted(unique.values(), key=lock_order)


class _KeyedThreadLocks:
    """In-process mutual exclusion per key, with a deadline."""

    def __init__(self):
        self._condition = threading.Condition()
        self._held = set()

    def acquire(self, key, deadline):
        with self._condition:
            while key in self._held:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
            self._held.add(key)
            return True

    def release(self, key):
        with self._condition:
            self._held.discard(key)
            self._condition.notify_all()


_thread_locks = {}
_thread_locks_guard = threading.Lock()


def _thread_locks_for(path):
    # One registry per lock file and process, shared by every Ledger that uses the file.
    with _thread_locks_guard:
        return _thread_locks.setdefault((os.getpid(), path), _KeyedThreadLocks())


class FileLocks:
    """Lock sessions on a SQLite database's lock file (``<database>.locks``)."""

    def __init__(self, path, timeout):
        self.path = str(path)
        self.timeout = timeout
        self._fd = None
        self._fd_pid = None
        self._fd_guard = threading.Lock()

    def _descriptor(self):
        # Closing any descriptor of the file drops every record lock the process holds on it,
        # so each process opens the file once and keeps it open.
        with self._fd_guard:
            if self._fd is None or self._fd_pid != os.getpid():
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self._fd_pid = os.getpid()
            return self._fd

    @contextmanager
    def session(self):
        session = _FileLockSession(self)
        try:
            yield session
        finally:
            session.release_all()

    def close(self):
        with self._fd_guard:
            if self._fd is not None and self._fd_pid == os.getpid():
                os.close(self._fd)
            self._fd = None


class _FileLockSession:
    def __init__(self, locks):
        self.locks = locks
        self.threads = _thread_locks_for(locks.path)
        self.held = []

    def acquire(self, kind, value):
        key = lock_key(kind, value)
        if key in self.held:
            return
        deadline = time.monotonic() + self.locks.timeout
        if not self.threads.acquire(key, deadline):
            raise LockTimeout(_busy(kind, value))
        try:
            self._lock_byte(key, deadline, kind, value)
        except BaseException:
            self.threads.release(key)
            raise
        self.held.append(key)

    def acquire_many(self, names):
        """Take every lock of ``names`` (``LockName``) not yet held, in the global order."""
        for name in _ordered(names):
            self.acquire(name.kind, name.value)

    def try_acquire(self, kind, value):
        """Take the lock if it is free now; False (nothing taken) when another holds it."""
        key = lock_key(kind, value)
        if key in self.held:
            return True
        if not self.threads.acquire(key, time.monotonic()):
            return False
        try:
            fd = self.locks._descriptor()
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, key % _OFFSET_SPACE)
        except OSError as exc:
            self.threads.release(key)
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            return False
        self.held.append(key)
        return True

    def _lock_byte(self, key, deadline, kind, value):
        fd = self.locks._descriptor()
        offset = key % _OFFSET_SPACE
        delay = 0.002
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
                return
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeout(_busy(kind, value))
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)

    def release_all(self):
        fd = self.locks._descriptor() if self.held else None
        while self.held:
            key = self.held.pop()
            try:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, key % _OFFSET_SPACE)
            finally:
                self.threads.release(key)


class AdvisoryLocks:
    """Lock sessions on PostgreSQL advisory locks."""

    def __init__(self, engine, timeout):
        self.engine = engine
        self.timeout = timeout

    @contextmanager
    def session(self):
        connection = self.engine.connect()
        try:
            connection.begin()
            # lock_timeout bounds each wait; set_config(..., true) lasts for this transaction.
            connection.execute(
                text("SELECT set_config('lock_timeout', :value, true)"),
                {"value": f"{max(1, int(self.timeout * 1000))}ms"},
            )
            yield _AdvisoryLockSession(connection)
        finally:
            # Rolling back ends the transaction and with it every lock the session took.
            try:
                connection.rollback()
            finally:
                connection.close()

    def close(self):
        pass


class _AdvisoryLockSession:
    def __init__(self, connection):
        self.connection = connection
        self.held = set()

    def acquire_many(self, names):
        """Take every lock of ``names`` (``LockName``) not yet held, in the global order, in one
        statement on the session's connection; each wait is bounded by ``lock_timeout``."""
        keys = [name.key for name in _ordered(names) if name.key not in self.held]
        if not keys:
            return
        # A function scan over unnest() yields the array's elements in order, so the locks are
        # taken in the order given.
        statement = text(
            "SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"
        )
        try:
            self.connection.execute(statement, {"keys": keys}).all()
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                raise LockTimeout(f"{len(keys)} orders or customers: one is busy") from None
            raise
        self.held.update(keys)

    def try_acquire(self, kind, value):
        """Take the lock if it is free now; False (nothing taken) when another holds it."""
        key = lock_key(kind, value)
        if key in self.held:
            return True
        statement = text("SELECT pg_try_advisory_xact_lock(:key)")
        if not self.connection.execute(statement, {"key": key}).scalar():
            return False
        self.held.add(key)
        return True

    def acquire(self, kind, value):
        key = lock_key(kind, value)
        if key in self.held:
            return
        try:
            self.connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                raise LockTimeout(_busy(kind, value)) from None
            raise
        self.held.add(key)
