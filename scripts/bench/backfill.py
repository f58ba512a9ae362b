"""Driver of scripts/bench_backfill (see there)."""

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from magsync.ledger import Ledger  # noqa: E402
from magsync.sandbox.magento import SandboxStore  # noqa: E402
from magsync.sandbox.salesforce import SandboxOrg  # noqa: E402
from magsync.settings import Settings  # noqa: E402
from tests import processes  # noqa: E402
from tests.helpers import delete_namespace  # noqa: E402

BROKER = os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
SECRET = "bench-backfill-secret"  # noqa: S105 - the benchmark's own throwaway webhook secret
HISTORY_FROM = dt.datetime(2023, 1, 1)


def buyer(n):
    return {
        "customer_email": f"buyer{n}@bench.example.com",
        "customer_firstname": "Buyer",
        "customer_lastname": f"Number {n}",
    }


class Stack:
    """Org, store, web, the live worker and the backfill worker, in a namespace of their own."""

    def __init__(self, args, folder):
        self.args = args
        self.folder = folder
        self.namespace = f"magsync-bench-backfill-{uuid.uuid4().hex[:8]}"
        self.org = SandboxOrg(
            state_dir=folder / "org", latency_ms=args.latency, bulk_latency=args.bulk_latency
        ).start()
        self.web_port = processes.free_port()
        # No webhooks while the history is made: those orders never reached magsync.
        self.store = SandboxStore(seed=5, customers=args.buyers, webhook_secret=SECRET).start()
        self.processes = []
        common = {"CELERY_BROKER_URL": BROKER, "MAGSYNC_BROKER_NAMESPACE": self.namespace}
        self.env = {
            **common,
            **self.org.settings(),
            **self.store.settings(),
            "DATABASE_URL": f"sqlite:///{folder / 'ledger.db'}",
            "SALESFORCE_RATE_LIMIT": "100000/s",
            "MAGSYNC_BULK_THRESHOLD": str(args.bulk_threshold),
            "LOG_LEVEL": "INFO",
        }
        web, _ = processes.start_web(
            {**common, "MAGENTO_WEBHOOK_SECRET": SECRET, "GUNICORN_ACCESS_LOG": "0"},
            folder,
            port=self.web_port,
            threads=8,
            workers=1,
        )
        self.processes.append(web)
        self.processes.append(processes.start_worker(self.env, folder, "live"))
        self.processes.append(
            processes.start_worker(self.env, folder, "backfill", extra=["--queues", "backfill"])
        )
        self.ledger = Ledger(Settings.from_env(self.env))
        self.ledger.ready()

    def history(self):
        """``args.orders`` orders of ``args.buyers`` buyers, spread over the past year."""
        count, buyers = self.args.orders, self.args.buyers
        step = dt.timedelta(days=365) / max(count, 1)
        for n in range(count):
            at = (HISTORY_FROM + n * step).strftime("%Y-%m-%d %H:%M:%S")
            self.store.create_orders(1, at=at, **buyer(n % buyers))

    def go_live(self):
        self.store.set_webhook(url=f"http://127.0.0.1:{self.web_port}/magento/webhook")

    def live_order(self, n):
        """Webhook-to-record seconds of one live order."""
        placed_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        order = self.store.place_order(**buyer(self.args.buyers + n))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            _, history = self.ledger.history(order["increment_id"])
            synced = [e for e in history if e.kind == "synced"]
            if synced:
                return (synced[0].at - placed_at).total_seconds(), synced[0].detail
            time.sleep(0.01)
        sys.exit(f"live order {order['increment_id']} not synced in 120 s; logs in {self.folder}")

    def close(self):
        for process in reversed(self.processes):
            process.stop()
        self.ledger.close()
        self.store.stop()
        self.org.stop()
        delete_namespace(BROKER, self.namespace)


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def idle(stack, args):
    latencies = []
    for n in range(args.live):
        seconds, _ = stack.live_order(n)
        latencies.append(seconds)
        time.sleep(args.pause)
    return latencies


def during(stack, args, first):
    """Run ``magsync backfill`` while placing live orders one after the other; ``(latencies,
    the live orders' API calls, the backfill's seconds, its output, its exit code)``."""
    argv = [str(processes.BIN / "magsync"), "backfill", "--since", HISTORY_FROM.isoformat()]
    log = stack.folder / "backfill.out"
    started = time.monotonic()
    with open(log, "w") as out:
        run = subprocess.Popen(
            argv,
            env={**processes.BASE_ENV, **stack.env},
            cwd=processes.ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        latencies, live_calls, n = [], 0, first
        while run.poll() is None:
            seconds, detail = stack.live_order(n)
            if run.poll() is None:  # synced while the backfill still ran
                latencies.append(seconds)
            live_calls += detail.get("api_calls") or 0
            n += 1
            time.sleep(args.pause)
        run.wait()
    elapsed = time.monotonic() - started
    return latencies, live_calls, elapsed, log.read_text(), run.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=10_000, help="historical orders")
    parser.add_argument("--buyers", type=int, default=2_000, help="distinct buyers among them")
    parser.add_argument("--live", type=int, default=20, help="live orders idle and during")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between live orders")
    parser.add_argument("--latency", type=float, default=50.0, help="ms per Salesforce call")
    parser.add_argument("--bulk-latency", type=float, default=1.0, help="s a bulk job waits")
    parser.add_argument(
        "--bulk-threshold",
        type=int,
        default=2000,
        help="MAGSYNC_BULK_THRESHOLD (lower it to take the Bulk API path in a small run)",
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="magsync-bench-backfill-"))
    print(f"logs in {folder}")
    stack = Stack(args, folder)
    try:
        made = time.monotonic()
        stack.history()
        made = time.monotonic() - made
        print(f"history: {args.orders} orders of {args.buyers} buyers ({made:.1f} s)")
        stack.go_live()
        quiet = idle(stack, args)
        stack.org.reset_stats()
        busy, live_calls, elapsed, output, code = during(stack, args, args.live)
        if code != 0:
            sys.exit(f"magsync backfill failed ({code}):\n{output}")
        report(stack, args, quiet, busy, live_calls, elapsed, output)
    finally:
        stack.close()


def report(stack, args, quiet, busy, live_calls, elapsed, output):
    stats = stack.org.stats()
    backfill_calls = stats["api_calls"] - live_calls
    per_order = backfill_calls / args.orders
    jobs = stats["bulk"]["jobs"]
    print(output.strip().splitlines()[-1] if output.strip() else "(no output)")
    print(
        f"backfill: {args.orders} orders in {elapsed:.1f} s, {backfill_calls} Salesforce API "
        f"calls ({jobs} bulk jobs): {per_order:.4f} calls per order "
        f"(live orders' {live_calls} calls excluded) {stats['calls_by_kind']}"
    )
    idle_median, busy_median = median(quiet), median(busy) if busy else float("nan")
    print(
        f"live webhook->record median: idle {idle_median * 1000:.0f} ms ({len(quiet)} orders), "
        f"during the backfill {busy_median * 1000:.0f} ms ({len(busy)} orders): "
        f"{busy_median / idle_median:.2f}x"
    )
    goals = [
        ("<= 0.02 API calls per order", per_order <= 0.02),
        ("live median during the backfill within 2x of idle", busy_median <= 2 * idle_median),
        (f">= {args.live} live orders measured during the backfill", len(busy) >= args.live),
    ]
    for goal, met in goals:
        print(f"  {'met' if met else 'MISSED':>6}  {goal}")


if __name__ == "__main__":
    main()
