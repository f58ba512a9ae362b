"""Driver of scripts/bench_sync (see there)."""

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import process_cpu as cpu  # noqa: E402

from magsync.ledger import Ledger  # noqa: E402
from magsync.sandbox.magento import SandboxStore  # noqa: E402
from magsync.sandbox.salesforce import SandboxOrg  # noqa: E402
from magsync.settings import Settings  # noqa: E402
from tests import processes  # noqa: E402
from tests.helpers import delete_namespace, queue_depth  # noqa: E402

BROKER = os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
SECRET = "bench-sync-secret"  # noqa: S105 - the benchmark's own throwaway webhook secret
MODES = {
    "one order per call": {"MAGSYNC_BATCH_SIZE": "1"},
    "coalesced": {},  # the defaults: batches of 200, 25 ms linger
}


def buyer(n):
    return {
        "customer_email": f"buyer{n}@bench.example.com",
        "customer_firstname": "Buyer",
        "customer_lastname": f"Number {n}",
    }


class Stack:
    """Org, store, web and workers of one mode, in a RabbitMQ namespace and ledger of its own."""

    def __init__(self, name, env, args, folder):
        self.name = name
        self.args = args
        self.folder = folder
        self.folder.mkdir(parents=True)
        self.namespace = f"magsync-bench-sync-{uuid.uuid4().hex[:8]}"
        self.org = SandboxOrg(state_dir=folder.parent / "org", latency_ms=args.latency).start()
        web_port = processes.free_port()
        self.store = SandboxStore(
            webhook_url=f"http://127.0.0.1:{web_port}/magento/webhook",
            webhook_secret=SECRET,
            seed=11,
        ).start()
        self.processes = []
        common = {"CELERY_BROKER_URL": BROKER, "MAGSYNC_BROKER_NAMESPACE": self.namespace}
        web, _ = processes.start_web(
            {**common, "MAGENTO_WEBHOOK_SECRET": SECRET, "GUNICORN_ACCESS_LOG": "0"},
            folder,
            port=web_port,
            threads=8,
            workers=2,
        )
        self.processes.append(web)
        self.web = web
        rest = {} if args.payload else self.store.settings()
        self.worker_env = {
            **common,
            **self.org.settings(),
            **rest,
            "DATABASE_URL": f"sqlite:///{folder / 'ledger.db'}",
            # Celery's task-start limit is not what is measured here; both modes lift it.
            "SALESFORCE_RATE_LIMIT": "100000/s",
            "LOG_LEVEL": "INFO",  # the worker says " ready." at INFO
            **env,
        }
        settings = Settings.from_env(self.worker_env)
        self.workers = []
        self.start_workers()
        self.ledger = Ledger(settings)
        self.ledger.ready()

    def start_workers(self):
        pool = Settings.from_env(self.worker_env).worker_pool_size
        for n in range(self.args.workers):
            name = f"w{n}-{len(self.workers)}"
            worker = processes.start_worker(self.worker_env, self.folder, name, concurrency=pool)
            self.workers.append(worker)
            self.processes.append(worker)

    def stop_workers(self):
        for worker in self.workers:
            worker.stop()
            self.processes.remove(worker)
        self.workers = []

    def known_buyers(self, count):
        """Give Salesforce the first ``count`` buyers (Account and Contact), not the ledger."""
        accounts = self.org.insert("Account", [{"Name": f"Buyer {n}"} for n in range(count)])
        contacts = [
            {"LastName": f"Number {n}", "Email": buyer(n)["customer_email"], "AccountId": a}
            for n, a in enumerate(accounts)
        ]
        self.org.insert("Contact", contacts)

    def synced(self):
        return self.ledger.event_counts().get("synced", 0)

    def wait_synced(self, count, timeout):
        deadline = time.monotonic() + timeout
        while self.synced() < count:
            if time.monotonic() > deadline:
                sys.exit(f"{self.name}: {self.synced()} of {count} orders synced in {timeout} s")
            if not all(p.alive() for p in self.processes):
                sys.exit(f"{self.name}: a process died; logs in {self.folder}")
            time.sleep(0.05)

    def close(self):
        for process in reversed(self.processes):
            process.stop()
        self.ledger.close()
        self.store.stop()
        self.org.stop()
        delete_namespace(BROKER, self.namespace)


def burst(stack, args):
    """``(orders/s, API calls per order, seconds, calls by kind, CPU ms per order by process)``
    of ``args.orders`` orders placed at once."""
    warm = [stack.store.place_order(**buyer(n)) for n in range(args.buyers, args.buyers + 4)]
    stack.wait_synced(len(warm), 120)
    stack.org.reset_stats()
    meter = cpu.Meter(
        {
            "web": lambda: cpu.process_tree(stack.web.popen.pid),
            "workers": lambda: [
                pid for w in stack.workers for pid in cpu.process_tree(w.popen.pid)
            ],
            "sandboxes": lambda: [os.getpid()],  # and the load generator
            "RabbitMQ": lambda: cpu.named("beam.smp"),
        }
    )
    meter.start()
    started = time.monotonic()
    for n in range(args.orders):
        stack.store.place_order(**buyer(n % args.buyers))
    stack.wait_synced(len(warm) + args.orders, args.timeout)
    elapsed = time.monotonic() - started
    spent = {name: s * 1000 / args.orders for name, s in meter.stop().items()}
    stats = stack.org.stats()
    calls, kinds = stats["api_calls"], stats["calls_by_kind"]
    return args.orders / elapsed, calls / args.orders, elapsed, kinds, spent


def trickle(stack, args):
    """Webhook-to-record seconds of ``args.trickle`` orders placed one at a time."""
    latencies = []
    for n in range(args.trickle):
        before = stack.synced()
        placed_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        order = stack.store.place_order(**buyer(n % args.buyers))
        stack.wait_synced(before + 1, 60)
        _, history = stack.ledger.history(order["increment_id"])
        synced_at = next(e.at for e in history if e.kind == "synced")
        latencies.append((synced_at - placed_at).total_seconds())
        time.sleep(args.pause)
    return latencies


def drain(stack, args):
    """Orders/s of workers that start with ``args.drain`` orders waiting in RabbitMQ."""
    stack.stop_workers()
    before = stack.synced()
    for n in range(args.drain):
        stack.store.place_order(**buyer(n % args.buyers))
    queue = f"{stack.namespace}.orders"
    deadline = time.monotonic() + args.timeout
    while queue_depth(BROKER, queue) < args.drain:
        if time.monotonic() > deadline:
            sys.exit(f"{stack.name}: the orders did not all reach the queue")
        time.sleep(0.2)
    stack.start_workers()
    started = time.monotonic()
    stack.wait_synced(before + args.drain, args.timeout)
    return args.drain / (time.monotonic() - started)


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run_mode(name, env, args, folder):
    print(f"{name}: starting web, {args.workers} workers, the org ({args.latency:g} ms per call)")
    stack = Stack(name, env, args, folder)
    try:
        stack.known_buyers(args.buyers // 2)
        rate, per_order, elapsed, kinds, spent = burst(stack, args)
        print(
            f"{name}: burst of {args.orders} orders in {elapsed:.1f} s: {rate:.1f} orders/s, "
            f"{per_order:.4f} API calls per order {kinds}"
        )
        if spent:
            print(
                f"{name}: CPU per order: "
                + ", ".join(f"{group} {ms:.2f} ms" for group, ms in spent.items())
            )
        latencies = trickle(stack, args)
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        print(f"{name}: trickle of {args.trickle}: p50 {p50 * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms")
        figures = {"rate": rate, "calls": per_order, "p50": p50, "p99": p99, "cpu": spent}
        if args.drain:
            figures["drain"] = drain(stack, args)
            print(f"{name}: {args.drain} orders waiting in RabbitMQ: {figures['drain']:.1f}/s")
        return figures
    finally:
        stack.close()


def report(results, args):
    base, coalesced = results["one order per call"], results["coalesced"]
    print()
    source = "mapping the webhook's payload" if args.payload else "reading each order's REST"
    print(
        f"burst: {args.orders} orders from {args.buyers} buyers (half known to Salesforce), "
        f"webhooks from the sandbox store through gunicorn (2 x 8 threads), {args.workers} "
        f"worker dyno(s) ({source}), org latency {args.latency:g} ms; trickle: {args.trickle} "
        "orders one at a time"
    )
    print(f"{'':28}{'one order per call':>20}{'coalesced':>12}{'ratio':>9}")
    print(
        f"{'burst orders/s':28}{base['rate']:>20.1f}{coalesced['rate']:>12.1f}"
        f"{coalesced['rate'] / base['rate']:>8.1f}x"
    )
    print(f"{'burst API calls per order':28}{base['calls']:>20.4f}{coalesced['calls']:>12.4f}")
    for group in coalesced["cpu"]:
        label = f"burst CPU/order {group}"
        print(
            f"{label:28}{base['cpu'].get(group, 0.0):>17.2f} ms{coalesced['cpu'][group]:>9.2f} ms"
        )
    if args.drain:
        print(
            f"{'drain orders/s (sync only)':28}{base['drain']:>20.1f}{coalesced['drain']:>12.1f}"
            f"{coalesced['drain'] / base['drain']:>8.1f}x"
        )
    for key in ("p50", "p99"):
        print(
            f"{'trickle ' + key + ' webhook->record':28}{base[key] * 1000:>17.0f} ms"
            f"{coalesced[key] * 1000:>9.0f} ms{(coalesced[key] - base[key]) * 1000:>+7.0f} ms"
        )
    goals = [
        ("burst >= 10x one order per call", coalesced["rate"] >= 10 * base["rate"]),
        ("<= 0.03 API calls per order", coalesced["calls"] <= 0.03),
        ("trickle p50 <= baseline + 50 ms", coalesced["p50"] <= base["p50"] + 0.05),
        ("trickle p99 < 1 s", coalesced["p99"] < 1.0),
    ]
    for goal, met in goals:
        print(f"  {'met' if met else 'MISSED':>6}  {goal}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("orders", type=int, nargs="?", default=5000)
    parser.add_argument("buyers", type=int, nargs="?", default=1000)
    parser.add_argument("--trickle", type=int, default=100, help="orders one at a time")
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between them")
    parser.add_argument("--workers", type=int, default=1, help="magsync worker dynos")
    parser.add_argument(
        "--payload",
        action="store_true",
        help="workers map the webhook's payload instead of reading each order from the store",
    )
    parser.add_argument("--latency", type=float, default=150.0, help="ms per Salesforce call")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds for a burst")
    parser.add_argument(
        "--drain",
        type=int,
        default=0,
        help="also time workers that start with this many orders waiting in RabbitMQ",
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="magsync-bench-sync-"))
    print(f"logs in {folder}")
    results = {}
    for index, (name, env) in enumerate(MODES.items()):
        results[name] = run_mode(name, env, args, folder / f"mode{index}")
    report(results, args)


if __name__ == "__main__":
    main()
