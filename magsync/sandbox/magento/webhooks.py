"""Webhooks for ``sales_order_save_after``: envelopes, signatures, and a sender that behaves.

Every save of an order becomes exactly one delivery (chaos may drop or duplicate it). Two
envelopes (:data:`ENVELOPES`):

``seed``
    ``{"event": "sales_order_save_after", "order": {...}}`` with the order in REST shape,
    serialised as PHP's ``json_encode`` does (``\\uXXXX`` escapes, ``\\/``), so only a receiver
    that verifies the raw bytes gets the signature right. Headers: ``Content-Type:
    application/json`` and ``X-Magento-Signature: sha256=<hex HMAC-SHA256 of the body>``.

``adobe``
    The Adobe I/O Events CloudEvent for ``com.adobe.commerce.observer.sales_order_save_after``:
    ``specversion``, ``id`` (the CloudEvent's own, not the event id), ``source``, ``type``,
    ``datacontenttype``, ``time``, ``eventid`` and ``recipientclientid`` with their deprecated
    twins ``event_id`` and ``recipient_client_id`` (the store's ``adobe_client_id``), and ``data``
    = ``{"key", "value", "source", "_metadata"}`` where ``value`` is the order's model data with
    string values (``"322.1700"``, ids ``"10"``), ``items``, ``addresses`` and ``payment``, and
    no ``extension_attributes``. Headers: ``x-adobe-event-id``, ``x-adobe-event-code``,
    ``x-adobe-digital-signature-1``/``-2`` (base64 RSA-SHA256 of the body, one per key) with
    ``x-adobe-public-key1-path``/``2-path`` (``/prod/keys/pub-key-<uuid>.pem``, served by the
    store as Adobe's key host serves them). No ``X-Magento-Signature``: Adobe never sends one.
    Before the first delivery to a URL the sender runs Adobe's registration check
    (``GET <url>?challenge=<token>``); a URL that does not echo the token gets no delivery, and
    the attempt counts as failed. :meth:`AdobeKeys.rotate` replaces a key (same path) mid-run.

Delivery (:class:`Sender`): a pool of sender threads with keep-alive sessions. Deliveries of
one order go out one at a time, in save order ("lanes"); different orders go in parallel.
Seed deliveries: connection errors, timeouts, 429 and 5xx are retried with exponential backoff and
jitter (honouring ``Retry-After``) until :class:`RetryPolicy` gives up. Adobe deliveries follow
Adobe's schedule: connection errors, timeouts, 429 and 5xx except 505 are retried after 1, 2, 4
and 8 minutes, then every 15 minutes until 24 hours have passed, all scaled by
``RetryPolicy.time_scale`` (tests run the day in seconds). 2xx ends a delivery, as does any other
status (a non-retryable refusal). Every attempt is logged, with when its delivery was queued and
when the attempt was due (``queued_ms``, ``released_ms``: milliseconds since the sender was
made; with bursts on, ``released_ms`` is the burst the attempt went with).

Chaos (:class:`Chaos`): ``duplicate`` (probability of sending a save twice, same body and
event id), ``drop`` (probability of never sending it; logged as ``dropped`` so reconciliation
can be checked against the log), ``reorder_window`` (seconds: each delivery is held a random
time up to the window and per-order order is no longer kept) and ``burst_every`` (seconds:
deliveries are held and released together at each multiple of the interval).
"""

import base64
import hashlib
import heapq
import hmac
import itertools
import json
import math
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from magsync.sandbox.magento.amounts import db_string

EVENT = "sales_order_save_after"
ADOBE_EVENT_CODE = "com.adobe.commerce.observer.sales_order_save_after"
SIGNATURE_HEADER = "X-Magento-Signature"
ADOBE_KEY_PREFIX = "/prod/keys/"
# Adobe's retry delays in seconds (then ADOBE_RETRY_EVERY until ADOBE_RETRY_FOR has passed).
ADOBE_RETRY_DELAYS = (60.0, 120.0, 240.0, 480.0)
ADOBE_RETRY_EVERY = 900.0
ADOBE_RETRY_FOR = 86400.0
USER_AGENT = "magsync-sandbox-magento"


def sign(secret, body):
    """The ``X-Magento-Signature`` value for a raw body: ``sha256=<hex HMAC-SHA256>``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def php_json(document):
    """JSON as PHP's ``json_encode`` writes it: compact, ``\\uXXXX`` for non-ASCII, ``\\/``."""
    # "/" only ever occurs inside strings in JSON text, so escaping it textually is exact.
    return json.dumps(document, separators=(",", ":")).replace("/", "\\/")


# -- envelopes --------------------------------------------------------------------------------


def seed_envelope(order, event_id, context):
    """The seed webhook body for a saved order."""
    return php_json({"event": EVENT, "order": order}).encode("ascii")


_NESTED = ("items", "billing_address", "payment", "status_histories", "extension_attributes")
_INTS = frozenset(
    {"entity_id", "customer_is_guest", "customer_note_notify", "customer_gender", "edit_increment",
     "total_item_count", "no_discount", "free_shipping", "email_sent", "parent_id"}
)  # fmt: skip


def _model_value(key, value):
    """A REST value as Magento's model data holds it after a load: strings, four decimals."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) and (key.endswith("_id") or key.startswith("is_") or key in _INTS):
        return str(value)
    if isinstance(value, (int, float)):
        return db_string(value)
    return value


def _model_row(row):
    """A flat row (item, address, payment): nested objects and lists are not model columns."""
    return {
        key: _model_value(key, value)
        for key, value in row.items()
        if not isinstance(value, (dict, list))
    }


def model_data(order):
    """The order as ``observer.sales_order_save_after`` carries it in ``data.value``."""
    value = {key: _model_value(key, v) for key, v in order.items() if key not in _NESTED}
    value["items"] = [_model_row(row) for row in order["items"]]
    addresses = [order["billing_address"]]
    for assignment in order.get("extension_attributes", {}).get("shipping_assignments", []):
        addresses.append(assignment["shipping"]["address"])
    value["addresses"] = [
        {**_model_row(address), "street": "\n".join(address.get("street", []))}
        for address in addresses
    ]
    value["payment"] = _model_row(order["payment"])
    return value


def adobe_envelope(order, event_id, context):
    """The Adobe I/O Events CloudEvent body for a saved order."""
    now = datetime.now(UTC)
    website_id, group_id = context.get("stores", {}).get(order["store_id"], (1, 1))
    recipient = context["recipient_client_id"]
    document = {
        "specversion": "1.0",
        # The CloudEvent's id is its own: receivers must dedupe on eventid, not on this.
        "id": str(uuid.uuid4()),
        "source": f"urn:uuid:{context['provider_id']}",
        "type": ADOBE_EVENT_CODE,
        "datacontenttype": "application/json",
        "time": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "event_id": event_id,
        "eventid": event_id,
        "recipient_client_id": recipient,
        "recipientclientid": recipient,
        "data": {
            "key": str(uuid.uuid4()),
            "value": model_data(order),
            "source": context["instance"],
            "_metadata": {
                "commerceEdition": "Adobe Commerce",
                "commerceVersion": "2.4.7",
                "eventsClientVersion": "1.12.1",
                "storeId": str(order["store_id"]),
                "websiteId": str(website_id),
                "storeGroupId": str(group_id),
            },
        },
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


ENVELOPES = {"seed": seed_envelope, "adobe": adobe_envelope}
"""Envelope builders by name: ``build(order, event_id, context) -> bytes``."""


class AdobeKeys:
    """The two RSA key pairs Adobe I/O Events signs deliveries with (made on first use).

    Each is published at ``/prod/keys/pub-key-<uuid>.pem``, as on Adobe's key host.
    :meth:`rotate` replaces a key pair and keeps its path: a receiver that cached the old key
    verifies through the other signature until its cache expires and it fetches the new one.
    """

    def __init__(self):
        self._keys = None
        self._paths = [f"{ADOBE_KEY_PREFIX}pub-key-{uuid.uuid4()}.pem" for _ in range(2)]
        self._lock = threading.Lock()

    def _pairs(self):
        with self._lock:
            if self._keys is None:
                self._keys = [_new_key() for _ in self._paths]
            return list(self._keys)

    @property
    def paths(self):
        """The key paths, key 1 first (for ``x-adobe-public-key1-path`` / ``2-path``)."""
        return tuple(self._paths)

    def public_pem(self, index):
        """PEM of public key ``index`` (0 or 1)."""
        return (
            self._pairs()[index]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def pem_at(self, path):
        """The PEM published at ``path``, or None."""
        if path not in self._paths:
            return None
        return self.public_pem(self._paths.index(path))

    def rotate(self, index):
        """Replace key ``index`` (0 or 1) with a new key pair at the same path."""
        self._pairs()
        key = _new_key()
        with self._lock:
            self._keys[index] = key
        return self._paths[index]

    def signatures(self, body):
        """The two base64 RSA-SHA256 (PKCS#1 v1.5) signatures of a body."""
        return [
            base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")
            for key in self._pairs()
        ]

    def headers(self, body):
        """The signature and key-path headers Adobe sends with ``body``."""
        first, second = self.signatures(body)
        return {
            "x-adobe-digital-signature-1": first,
            "x-adobe-digital-signature-2": second,
            "x-adobe-public-key1-path": self._paths[0],
            "x-adobe-public-key2-path": self._paths[1],
        }


def _new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def adobe_retry_delay(failures, time_scale=1.0):
    """Seconds before Adobe's retry after ``failures`` failed attempts (scaled)."""
    if failures <= len(ADOBE_RETRY_DELAYS):
        return ADOBE_RETRY_DELAYS[failures - 1] * time_scale
    return ADOBE_RETRY_EVERY * time_scale


def adobe_retries(status_code):
    """Whether Adobe retries after this answer (None: no answer, a timeout or network error)."""
    return status_code is None or status_code == 429 or (status_code >= 500 and status_code != 505)


# -- delivery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed delivery is tried again, and when the sender gives up.

    The n-th retry waits between half and all of ``min(max_delay, base * factor**(n-1))``
    seconds (jitter), and at least what a ``Retry-After`` header asks, up to
    ``max_retry_after``. The sender gives up after ``max_attempts`` attempts or
    ``give_up_after`` seconds since the first. ``timeout`` bounds each attempt (Adobe I/O
    Events allows 10 s). These apply to seed deliveries; Adobe deliveries follow Adobe's own
    schedule, with every delay and its 24-hour limit multiplied by ``time_scale``.
    """

    base: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0
    max_attempts: int = 10
    give_up_after: float = 86400.0
    timeout: float = 10.0
    max_retry_after: float = 300.0
    time_scale: float = 1.0

    def __post_init__(self):
        if self.time_scale <= 0:
            raise ValueError("time_scale must be greater than 0")

    def delay(self, failures, rng, retry_after=None):
        ceiling = min(self.max_delay, self.base * self.factor ** (failures - 1))
        wait = ceiling / 2 + rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


@dataclass(frozen=True)
class Chaos:
    """Misbehaviour of the sender, for testing receivers (all off by default)."""

    duplicate: float = 0.0
    drop: float = 0.0
    reorder_window: float = 0.0
    burst_every: float = 0.0

    def __post_init__(self):
        for name in ("duplicate", "drop"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability between 0 and 1")
        for name in ("reorder_window", "burst_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} is a number of seconds, not negative")


@dataclass(frozen=True)
class Target:
    """Where deliveries go and how they are made: URL (None: nowhere), secret, envelope."""

    url: str | None = None
    secret: str = ""
    envelope: str = "seed"

    def __post_init__(self):
        if self.envelope not in ENVELOPES:
            raise ValueError(f"envelope must be one of {', '.join(ENVELOPES)}")


@dataclass
class Delivery:
    """One save to deliver; ``lane`` serialises the deliveries of one order."""

    event_id: str
    entity_id: int
    increment_id: str
    updated_at: str
    order_state: str
    order_status: str
    envelope: str
    body: bytes
    lane: object
    duplicate: bool = False
    attempts: int = 0
    first_attempt: float | None = None
    due: float = 0.0
    queued_at: float = 0.0
    released_at: float | None = None
    adobe_signatures: list = field(default_factory=list)


def _retry_after(value):
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


class Sender:
    """Delivers saves to the current :class:`Target` with a pool of ``workers`` threads.

    ``context`` carries what envelopes need (Adobe ids, store websites); ``keys`` signs Adobe
    deliveries. ``seed`` makes chaos and jitter reproducible.
    """

    def __init__(
        self, target=None, policy=None, chaos=None, workers=8, seed=None, context=None, keys=None
    ):
        self._target = target or Target()
        self._policy = policy or RetryPolicy()
        self._chaos = chaos or Chaos()
        self._workers_wanted = workers
        # Jitter and chaos draws are reproducible test inputs, not secrets.
        self._rng = random.Random(seed)  # noqa: S311
        self._context = context or {}
        self._keys = keys or AdobeKeys()
        self._cond = threading.Condition()
        self._lanes = {}
        self._ready = deque()
        self._timers = []
        self._tiebreak = itertools.count()
        self._holds = itertools.count()
        self._in_flight = 0
        self._paused = False
        self._stopping = False
        self._threads = []
        self._log = []
        self._registration = threading.Lock()
        self._registered_urls = set()
        self._registrations = []
        self._counts = dict.fromkeys(
            ("saves", "queued", "delivered", "rejected", "gave_up", "dropped", "duplicated",
             "attempts", "retries"),
            0,
        )  # fmt: skip
        self._epoch = time.monotonic()

    # -- configuration -----------------------------------------------------------------------

    @property
    def target(self):
        return self._target

    @property
    def policy(self):
        return self._policy

    @property
    def chaos(self):
        return self._chaos

    def set_target(self, **changes):
        """Change URL, secret or envelope; pending deliveries go to the new URL."""
        with self._cond:
            self._target = replace(self._target, **changes)
            return self._target

    def set_chaos(self, **changes):
        with self._cond:
            self._chaos = replace(self._chaos, **changes)
            return self._chaos

    def set_policy(self, **changes):
        with self._cond:
            self._policy = replace(self._policy, **changes)
            return self._policy

    def pause(self):
        """Hold every delivery (attempts under way finish) until :meth:`resume`."""
        with self._cond:
            self._paused = True

    def resume(self):
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self):
        with self._cond:
            if self._threads:
                return self
            self._stopping = False
            for number in range(self._workers_wanted):
                thread = threading.Thread(
                    target=self._work, name=f"magento-webhook-{number}", daemon=True
                )
                self._threads.append(thread)
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout=5.0):
        """Stop the workers; undelivered deliveries stay queued (and are abandoned)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            threads, self._threads = self._threads, []
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- submitting --------------------------------------------------------------------------

    def submit(self, order):
        """Queue the delivery of one save (called in save order)."""
        with self._cond:
            self._counts["saves"] += 1
            target, chaos = self._target, self._chaos
            if target.url is None:
                return
            event_id = str(uuid.uuid4())
            body = ENVELOPES[target.envelope](order, event_id, self._context)
            delivery = Delivery(
                event_id=event_id,
                entity_id=order["entity_id"],
                increment_id=order["increment_id"],
                updated_at=order["updated_at"],
                order_state=order["state"],
                order_status=order["status"],
                envelope=target.envelope,
                body=body,
                lane=order["entity_id"],
                queued_at=time.monotonic(),
            )
            if chaos.drop and self._rng.random() < chaos.drop:
                self._counts["dropped"] += 1
                self._record(delivery, "dropped", None, None, 0.0, target.url)
                return
            copies = [delivery]
            if chaos.duplicate and self._rng.random() < chaos.duplicate:
                self._counts["duplicated"] += 1
                copies.append(replace(delivery, duplicate=True, adobe_signatures=[]))
            now = time.monotonic()
            for copy in copies:
                if chaos.reorder_window:
                    copy.lane = ("held", next(self._holds))
                    copy.due = now + self._rng.uniform(0, chaos.reorder_window)
                self._counts["queued"] += 1
                lane = self._lanes.get(copy.lane)
                if lane is None:
                    self._lanes[copy.lane] = deque([copy])
                    self._schedule(copy.lane, now)
                else:
                    lane.append(copy)

    def _schedule(self, lane, now):
        """Make a lane's head eligible at its due time (and the next burst, with bursts on)."""
        head = self._lanes[lane][0]
        due = max(head.due, now)
        burst = self._chaos.burst_every
        if burst:
            due = self._epoch + math.ceil((due - self._epoch) / burst) * burst
        head.released_at = due
        if due <= now:
            self._ready.append(lane)
        else:
            heapq.heappush(self._timers, (due, next(self._tiebreak), lane))
        self._cond.notify()

    # -- sending -----------------------------------------------------------------------------

    def _next(self):
        with self._cond:
            while True:
                if self._stopping:
                    return None
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    self._ready.append(heapq.heappop(self._timers)[2])
                if self._ready and not self._paused:
                    lane = self._ready.popleft()
                    self._in_flight += 1
                    return lane, self._lanes[lane][0], self._target, self._policy
                wait = self._timers[0][0] - now if self._timers else None
                self._cond.wait(wait)

    def _work(self):
        session = requests.Session()
        try:
            while True:
                job = self._next()
                if job is None:
                    return
                self._finish(*job, self._attempt(session, *job))
        finally:
            session.close()

    def _headers(self, delivery, target):
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if delivery.envelope != "adobe":
            if target.secret:
                headers[SIGNATURE_HEADER] = sign(target.secret, delivery.body)
            return headers
        if not delivery.adobe_signatures:
            delivery.adobe_signatures = self._keys.signatures(delivery.body)
        first, second = self._keys.paths
        headers.update(
            {
                "x-adobe-event-id": delivery.event_id,
                "x-adobe-event-code": ADOBE_EVENT_CODE,
                "x-adobe-digital-signature-1": delivery.adobe_signatures[0],
                "x-adobe-digital-signature-2": delivery.adobe_signatures[1],
                "x-adobe-public-key1-path": first,
                "x-adobe-public-key2-path": second,
            }
        )
        return headers

    def _registered(self, url, timeout):
        """Run Adobe's registration check on ``url`` once (until it passes); None when it has
        passed, else why not."""
        with self._registration:
            if url in self._registered_urls:
                return None
            result = self.challenge(timeout, url=url)
            with self._cond:
                self._registrations.append(result)
            if result["ok"]:
                self._registered_urls.add(url)
                return None
        return f"registration check failed: {result['status']} {result['answer']}"

    def _attempt(self, session, lane, delivery, target, policy):
        """One HTTP attempt: ``(status_code, error, retry_after, elapsed_seconds)``."""
        started = time.monotonic()
        if delivery.first_attempt is None:
            delivery.first_attempt = started
        if target.url is None:
            return None, "no webhook URL", None, 0.0
        if delivery.envelope == "adobe":
            refused = self._registered(target.url, policy.timeout)
            if refused:
                return None, refused, None, time.monotonic() - started
        try:
            response = session.post(
                target.url,
                data=delivery.body,
                headers=self._headers(delivery, target),
                timeout=policy.timeout,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            return None, f"timeout: {exc}", None, time.monotonic() - started
        except requests.RequestException as exc:
            return None, f"{type(exc).__name__}: {exc}", None, time.monotonic() - started
        with response:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            return response.status_code, None, retry_after, time.monotonic() - started

    def _outcome(self, delivery, policy, status_code, now):
        """``delivered``, ``rejected``, ``gave_up`` or ``retrying``."""
        if status_code is not None and 200 <= status_code < 300:
            return "delivered"
        since = now - delivery.first_attempt
        if delivery.envelope == "adobe":
            if not adobe_retries(status_code):
                return "rejected"
            return "gave_up" if since >= ADOBE_RETRY_FOR * policy.time_scale else "retrying"
        if status_code is not None and status_code != 429 and status_code < 500:
            return "rejected"
        if delivery.attempts >= policy.max_attempts or since >= policy.give_up_after:
            return "gave_up"
        return "retrying"

    def _retry_delay(self, delivery, policy, retry_after):
        if delivery.envelope == "adobe":
            return adobe_retry_delay(delivery.attempts, policy.time_scale)
        return policy.delay(delivery.attempts, self._rng, retry_after)

    def _finish(self, lane, delivery, target, policy, result):
        status_code, error, retry_after, elapsed = result
        with self._cond:
            self._in_flight -= 1
            self._counts["attempts"] += 1
            delivery.attempts += 1
            now = time.monotonic()
            outcome = self._outcome(delivery, policy, status_code, now)
            self._record(delivery, outcome, status_code, error, elapsed, target.url)
            if outcome == "retrying":
                self._counts["retries"] += 1
                delivery.due = now + self._retry_delay(delivery, policy, retry_after)
                self._schedule(lane, now)
            else:
                self._counts[outcome] += 1
                queue = self._lanes[lane]
                queue.popleft()
                if queue:
                    self._schedule(lane, now)
                else:
                    del self._lanes[lane]
            self._cond.notify_all()

    def _record(self, delivery, outcome, status_code, error, elapsed, url):
        self._log.append(
            {
                "seq": len(self._log),
                "event_id": delivery.event_id,
                "entity_id": delivery.entity_id,
                "increment_id": delivery.increment_id,
                "updated_at": delivery.updated_at,
                "order_state": delivery.order_state,
                "order_status": delivery.order_status,
                "envelope": delivery.envelope,
                "duplicate": delivery.duplicate,
                "attempt": delivery.attempts,
                "outcome": outcome,
                "status": status_code,
                "error": error,
                "url": url,
                "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "elapsed_ms": round(elapsed * 1000, 2),
                "queued_ms": self._since_start(delivery.queued_at),
                "released_ms": self._since_start(delivery.released_at),
            }
        )

    def _since_start(self, moment):
        return None if moment is None else round((moment - self._epoch) * 1000, 3)

    def challenge(self, timeout=10.0, url=None):
        """Adobe's registration check: ``GET <url>?challenge=<token>`` must echo the token.

        ``url`` defaults to the current target's. The answer may be the token itself or
        ``{"challenge": token}``; returns what happened.
        """
        url = url or self._target.url
        token = uuid.uuid4().hex
        result = {"url": url, "challenge": token, "ok": False, "status": None, "answer": None}
        if url is None:
            result["answer"] = "no webhook URL"
            return result
        try:
            response = requests.get(url, params={"challenge": token}, timeout=timeout)
        except requests.RequestException as exc:
            result["answer"] = f"{type(exc).__name__}: {exc}"
            return result
        with response:
            text = response.text.strip()
            result.update(status=response.status_code, answer=text[:500])
            try:
                echoed = response.json().get("challenge") if text.startswith("{") else text
            except ValueError:
                echoed = None
        result["ok"] = response.status_code == 200 and echoed == token
        return result

    # -- inspection --------------------------------------------------------------------------

    def log(self, since=0):
        """Delivery log entries from position ``since`` on (one per attempt, plus drops)."""
        with self._cond:
            return [dict(entry) for entry in self._log[since:]]

    def pending(self):
        """Deliveries not finished yet (queued, waiting for a retry, or being sent)."""
        with self._cond:
            return sum(len(queue) for queue in self._lanes.values())

    def wait_idle(self, timeout=None):
        """Block until nothing is pending; False when ``timeout`` (seconds) ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._lanes, timeout)

    def status(self):
        with self._cond:
            return {
                "pending": sum(len(queue) for queue in self._lanes.values()),
                "in_flight": self._in_flight,
                "paused": self._paused,
                "idle": not self._lanes,
                "log_size": len(self._log),
                "target": {"url": self._target.url, "envelope": self._target.envelope},
                "chaos": asdict(self._chaos),
                "registrations": [dict(r) for r in self._registrations],
                "policy": asdict(self._policy),
                **self._counts,
            }
