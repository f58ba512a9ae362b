"""The chaos run: the promise that every accepted order ends in Salesforce or in the dead-letter
queue, checked while everything around magsync misbehaves.

- the sandbox store places orders and takes them through their lifecycle (invoice, ship, and for
  some refund, cancel, hold/unhold or an admin edit), with duplicated and reordered webhooks;
- the sandbox org answers 503, 429 and REQUEST_LIMIT_EXCEEDED, hangs past the client timeout
  (and sometimes applies the write anyway), expires tokens every 20 s, and rejects a few orders
  for good (a validation rule on large amounts);
- worker processes are SIGKILLed mid-call every few seconds and replaced;
- RabbitMQ is restarted once mid-run (the web process answers 503 meanwhile; the store retries).

The run has a RabbitMQ node of its own (``tests.rabbitmq_node``: a private ``rabbitmq-server`` on
free ports, with its data in the run's folder), restarted for the fault and removed at the end;
the machine's RabbitMQ is never used.

``ChaosRun(config).run()`` returns a ``Report``: accepted orders, synced with the store's latest
state, dead-lettered (with reasons), stale, missing (lost) and duplicated ones.
"""

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from magsync.mapping.opportunity import opportunity_record
from magsync.mapping.order import load_order
from magsync.messaging.app import create_celery
from magsync.messaging.dead_letters import DeadLetters
from magsync.sandbox.magento import SandboxStore
from magsync.sandbox.salesforce import SandboxOrg
from magsync.settings import Settings
from tests import processes
from tests.helpers import APPROVAL_LIMIT, approval_schema, queue_depth
from tests.rabbitmq_node import RabbitMQNode

PERMANENT_CODES = {"FIELD_CUSTOM_VALIDATION_EXCEPTION"}

# Fields the org must hold as the store's latest state says (StageName is checked apart: states
# outside the stage map keep the previous stage).
CHECKED_FIELDS = ("Amount", "CloseDate", "Name", "Magento_Customer_Email__c", "Description")


@dataclass
class ChaosConfig:
    orders: int = 120
    duration: float = 30.0  # seconds over which the store places and progresses orders
    workers: int = 2
    concurrency: int = 3
    kill_every: float = 4.0  # seconds between SIGKILLs of a worker mid-call
    restart_rabbitmq_at: float | None = 0.5  # fraction of the scenario; None: no restart
    unavailable: float = 0.10
    throttled: float = 0.05
    request_limit: float = 0.02
    hang: float = 0.02
    token_ttl: float = 20.0
    permanent: int = 3  # orders the org rejects for good
    duplicate: float = 0.10
    reorder_window: float = 2.0
    extra_actions: float = 0.2  # orders (as a share) refunded, cancelled, held or edited
    salesforce_timeout: float = 3.0
    # Per worker; Celery counts every task, skipped ones too, and the run has many duplicates.
    rate_limit: str = "200/s"
    settle_timeout: float = 600.0
    seed: int = 5


@dataclass
class Report:
    orders: int = 0  # orders in the store at the end (edits included)
    accepted: int = 0  # orders magsync answered 2xx for at least once
    synced: int = 0  # one Opportunity with the store's latest state
    dead_lettered: int = 0
    made_to_fail: list = field(default_factory=list)  # orders given a permanent error on purpose
    not_dead: list = field(default_factory=list)  # of those, the ones not dead-lettered
    stale: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)
    dead_reasons: Counter = field(default_factory=Counter)
    unexpected_dead: list = field(default_factory=list)
    extra_dead: list = field(default_factory=list)  # dead letters of orders that also synced
    deliveries: Counter = field(default_factory=Counter)
    org_stats: dict = field(default_factory=dict)
    kills: int = 0
    rabbitmq_restarts: int = 0
    seconds: float = 0.0

    @property
    def lost(self):
        return len(self.missing)

    def ok(self):
        return (
            not self.missing
            and not self.stale
            and not self.duplicates
            and not self.unexpected_dead
            and not self.extra_dead
            and not self.not_dead
            and self.accepted == self.synced + self.dead_lettered
        )

    def lines(self):
        stats = self.org_stats
        return [
            f"orders in the store:      {self.orders}",
            f"accepted by magsync:      {self.accepted}",
            f"synced (latest state):    {self.synced}",
            f"dead-lettered:            {self.dead_lettered} (reasons {dict(self.dead_reasons)}; "
            f"{len(self.made_to_fail)} made to fail, of which not dead-lettered: {self.not_dead})",
            f"accepted = synced + dead: {self.accepted == self.synced + self.dead_lettered}",
            f"dead letters of synced:   {len(self.extra_dead)} {self.extra_dead[:10]}",
            f"lost:                     {self.lost} {self.missing[:10]}",
            f"stale:                    {len(self.stale)} {self.stale[:10]}",
            f"duplicates:               {len(self.duplicates)} {self.duplicates[:10]}",
            f"webhook deliveries:       {dict(self.deliveries)}",
            f"salesforce responses:     {stats.get('responses')}",
            f"salesforce faults fired:  {stats.get('faults_fired')}  "
            f"token requests: {stats.get('token_requests')}  "
            f"API calls: {stats.get('api_calls')} {stats.get('calls_by_kind')}",
            f"workers SIGKILLed:        {self.kills}",
            f"RabbitMQ restarts:        {self.rabbitmq_restarts}",
            f"run time:                 {self.seconds:.0f} s",
        ]


class ChaosRun:
    def __init__(self, config, workdir, echo=print):
        self.config = config
        self.workdir = Path(workdir)
        self.echo = echo
        self.rng = random.Random(config.seed)
        self.namespace = f"magsync-chaos-{uuid.uuid4().hex[:8]}"
        self.workers = []
        self.broker = None  # the run's own RabbitMQ node
        self.report = Report()
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- set-up ---------------------------------------------------------------------------------

    def _start_org(self):
        c = self.config
        schema = approval_schema()
        org = SandboxOrg(
            state_dir=self.workdir / "org", token_ttl=c.token_ttl, schema=schema
        ).start()
        data = "/services/data/"
        org.add_fault(kind="unavailable", path=data, probability=c.unavailable)
        org.add_fault(kind="throttled", path=data, probability=c.throttled)
        org.add_fault(kind="request_limit", path=data, probability=c.request_limit)
        # Half the hangs drop the call, half let the write land after the client gave up.
        for then in ("close", "proceed"):
            org.add_fault(
                kind="hang",
                path=data,
                probability=c.hang / 2,
                seconds=c.salesforce_timeout + 1.5,
                then=then,
            )
        return org

    def _worker_env(self):
        return {
            **self.org.settings(),
            **self.store.settings(),
            "CELERY_BROKER_URL": self.broker.url,
            "MAGSYNC_BROKER_NAMESPACE": self.namespace,
            "DATABASE_URL": self.database_url,
            "SALESFORCE_TIMEOUT": str(self.config.salesforce_timeout),
            "MAGSYNC_RETRY_BACKOFF": "1",
            "MAGSYNC_RETRY_BACKOFF_MAX": "8",
            "MAGSYNC_CIRCUIT_COOLDOWN": "3",
            # A held call lands salesforce_timeout + 1.5 s after it began (see _start_org).
            "MAGSYNC_LATE_WRITE_WINDOW": str(self.config.salesforce_timeout + 5),
            "SALESFORCE_RATE_LIMIT": self.config.rate_limit,
            "LOG_LEVEL": "INFO",
        }

    def _start_worker(self, index):
        name = f"chaos{index}-{uuid.uuid4().hex[:4]}"
        return processes.start_worker(
            self._worker_env(), self.logs, name=name, concurrency=self.config.concurrency
        )

    # -- chaos ----------------------------------------------------------------------------------

    def _killer(self):
        while not self._stop.wait(self.config.kill_every):
            # Strike while Salesforce calls are in flight, so a worker dies mid-call.
            deadline = time.monotonic() + self.config.kill_every
            while self.org.stats()["in_flight"] == 0 and time.monotonic() < deadline:
                if self._stop.wait(0.05):
                    return
            with self._lock:
                index = self.rng.randrange(len(self.workers))
                victim = self.workers[index]
                victim.kill()
                victim.stop()
                self.report.kills += 1
                try:
                    self.workers[index] = self._start_worker(index)
                except (RuntimeError, TimeoutError) as exc:
                    self.echo(f"worker restart failed, retrying: {exc}")
                    self.workers[index] = self._start_worker(index)

    def _restart_rabbitmq(self, delay):
        if self._stop.wait(delay):
            return
        self.echo(f"restarting RabbitMQ (the run's own node {self.broker.node})")
        self.broker.restart(down_for=3)
        self.report.rabbitmq_restarts += 1
        self.echo("RabbitMQ is back")

    def _extra_actions(self):
        """Orders that end otherwise than shipped: refunded, cancelled, held, edited."""
        count = max(5, int(self.config.orders * self.config.extra_actions))
        for index in range(count):
            order = self.store.place_order()
            entity_id = order["entity_id"]
            kind = index % 5
            if kind == 0:  # paid, then refunded: closed
                self.store.invoice(entity_id)
                self.store.refund(entity_id)
            elif kind == 1:  # cancelled before payment
                self.store.cancel(entity_id)
            elif kind == 2:  # held while processing: keeps its stage
                self.store.invoice(entity_id)
                self.store.hold(entity_id)
            elif kind == 3:  # held, released, shipped
                self.store.invoice(entity_id)
                self.store.hold(entity_id)
                self.store.unhold(entity_id)
                self.store.ship(entity_id)
            else:  # edited by an admin: the parent is cancelled, the child goes on
                child = self.store.edit(entity_id)
                self.store.invoice(child["entity_id"])

    # -- the run --------------------------------------------------------------------------------

    def run(self):
        started = time.monotonic()
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.database_url = f"sqlite:///{self.workdir}/ledger.db"
        self.broker = RabbitMQNode(self.workdir / "rabbitmq", log_folder=self.logs / "rabbitmq")
        self.echo(f"starting the run's own RabbitMQ node {self.broker.node} ({self.broker.url})")
        self.broker.start()
        try:
            return self._run_with_broker(started)
        finally:
            self.broker.close()

    def _run_with_broker(self, started):
        c = self.config
        self.org = self._start_org()
        web_port = processes.free_port()
        self.store = SandboxStore(
            webhook_url=f"http://127.0.0.1:{web_port}/magento/webhook",
            webhook_secret="chaos-webhook-secret",
            seed=c.seed,
            retry={"base": 0.5, "max_delay": 5, "max_attempts": 10_000, "timeout": 10},
            chaos={"duplicate": c.duplicate, "reorder_window": c.reorder_window},
        ).start()
        web = None
        threads = []
        try:
            web, _ = processes.start_web(
                {
                    "CELERY_BROKER_URL": self.broker.url,
                    "MAGSYNC_BROKER_NAMESPACE": self.namespace,
                    "MAGENTO_WEBHOOK_SECRET": "chaos-webhook-secret",
                    "MAGSYNC_PUBLISH_TIMEOUT": "3",
                    "GUNICORN_ACCESS_LOG": "0",
                },
                self.logs,
                port=web_port,
                threads=8,
            )
            self.workers = [self._start_worker(i) for i in range(c.workers)]
            threads.append(threading.Thread(target=self._killer, daemon=True))
            if c.restart_rabbitmq_at is not None:
                threads.append(
                    threading.Thread(
                        target=self._restart_rabbitmq,
                        args=(c.duration * c.restart_rabbitmq_at,),
                        daemon=True,
                    )
                )
            for thread in threads:
                thread.start()
            self.echo(f"placing {c.orders} orders over {c.duration:.0f} s")
            for n in range(c.permanent):
                order = self.store.place_order(grand_total=APPROVAL_LIMIT + 1000 + n)
                self.report.made_to_fail.append(order["increment_id"])
            self.store.run_scenario(
                orders=c.orders - c.permanent, steps=("invoice", "ship"), duration=c.duration
            )
            self._extra_actions()
            self.echo("waiting for every webhook to be delivered")
            self.store.wait_idle(c.settle_timeout)
            self.echo("waiting for Salesforce to settle")
            self._settle(started + c.settle_timeout)
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=120)
            self._measure()
            for worker in self.workers:
                worker.stop()
            if web is not None:
                web.stop()
            self.store.stop()
            self.org.stop()
        self.report.seconds = time.monotonic() - started
        return self.report

    def _settle(self, deadline):
        """Wait until nothing moves: the work queue is empty and Salesforce sees no calls.

        Retries may wait in the broker's delay queues for up to the backoff cap (8 s here), so
        quiet means 20 s without a call.
        """
        quiet_since, last = None, None
        while time.monotonic() < deadline:
            snapshot = (
                queue_depth(self.broker.url, f"{self.namespace}.orders"),
                self.org.stats()["api_calls"],
            )
            if snapshot[0] == 0 and snapshot == last:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 20:
                    return
            else:
                quiet_since = None
            last = snapshot
            time.sleep(1)

    def _outcome(self):
        """(problems by order number, dead letters by order number) against the store's truth."""
        settings = Settings.from_env({})
        truth = {o["increment_id"]: o for o in self.store.truth()}
        records = {}
        for record in self.org.records("Opportunity"):
            records.setdefault(record.get("Magento_Order_ID__c"), []).append(record)
        celery = create_celery(
            Settings.from_env(
                {"CELERY_BROKER_URL": self.broker.url, "MAGSYNC_BROKER_NAMESPACE": self.namespace}
            )
        )
        letters = {}
        for letter in DeadLetters(celery, celery.magsync_topology).browse():
            letters.setdefault(letter.order, []).append(letter)
        problems = {}
        for number, order in truth.items():
            found = records.get(number, [])
            if len(found) > 1:
                problems[number] = "duplicate"
            elif not found:
                problems[number] = "dead" if number in letters else "missing"
            else:
                expected = opportunity_record(load_order(order), settings).fields
                record = found[0]
                wrong = [f for f in CHECKED_FIELDS if _value(record.get(f)) != _value(expected[f])]
                if order["state"] in settings.sf_stage_map and (
                    record.get("StageName") != expected["StageName"]
                ):
                    wrong.append("StageName")
                if wrong:
                    problems[number] = f"stale:{','.join(wrong)}"
        return problems, letters, truth

    def _measure(self):
        problems, letters, truth = self._outcome()
        report = self.report
        deliveries = self.store.deliveries()
        accepted = {d["increment_id"] for d in deliveries if d.get("status") in (200, 202)}
        report.deliveries = Counter(str(d.get("status") or d.get("outcome")) for d in deliveries)
        report.orders = len(truth)
        report.accepted = len(accepted)
        dead = {n for n in accepted if problems.get(n) == "dead"}
        report.dead_lettered = len(dead)
        report.synced = len([n for n in accepted if n not in problems])
        report.missing = sorted(n for n in accepted if problems.get(n) == "missing")
        report.stale = sorted(
            f"{n}({problems[n]})" for n in accepted if "stale" in problems.get(n, "")
        )
        report.duplicates = sorted(n for n in accepted if problems.get(n) == "duplicate")
        for number in dead:
            for letter in letters[number]:
                report.dead_reasons[letter.code] += 1
                if letter.code not in PERMANENT_CODES:
                    report.unexpected_dead.append(f"{number}:{letter.code}")
        report.not_dead = sorted(set(report.made_to_fail) - dead)
        report.extra_dead = sorted(
            f"{n}:{x.code}" for n, found in letters.items() if n not in dead for x in found
        )
        report.org_stats = self.org.stats()


def _value(value):
    """Compare numbers as numbers (the org stores floats, the mapping gives Decimals)."""
    if isinstance(value, (int, float)) or type(value).__name__ == "Decimal":
        return round(float(value), 2)
    return value
