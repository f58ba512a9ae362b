"""Benchmark the sandbox Magento store: a scenario of N orders (default 1,000), each placed,
invoiced and shipped (3 webhooks per order), delivered to a local receiver (its own process)
that verifies every signature and the per-order order of deliveries; then a full signed REST
read of all orders.
Prints its figures. Options: --orders N, --senders N, --envelope seed|adobe, --seed N.
"""

import argparse
import hashlib
import hmac
import json
import multiprocessing
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256
from requests_oauthlib import OAuth1

from magsync.sandbox.magento import SandboxStore

parser = argparse.ArgumentParser(prog="bench_sandbox_magento")
parser.add_argument("--orders", type=int, default=1000)
parser.add_argument("--senders", type=int, default=8)
parser.add_argument("--envelope", choices=["seed", "adobe"], default="seed")
parser.add_argument("--seed", type=int, default=1)
args = parser.parse_args()
SECRET = "bench-webhook-secret"  # noqa: S105 - the benchmark's throwaway webhook secret


def receive(ready, stop, results):
    """A webhook receiver in its own process, as magsync's web process would be.

    Verifies the HMAC of every delivery and that each order's saves arrive in order.
    """
    counts = {"verified": 0, "bad": 0, "out_of_order": 0}
    last_seen = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            ok = hmac.compare_digest(self.headers.get("X-Magento-Signature", ""), expected)
            document = json.loads(body)
            order = document["order"] if "order" in document else document["data"]["value"]
            entity_id, stamp = int(order["entity_id"]), order["updated_at"]
            with lock:
                counts["verified" if ok else "bad"] += 1
                if last_seen.get(entity_id, "") >= stamp:
                    counts["out_of_order"] += 1
                last_seen[entity_id] = stamp
            self.send_response(202 if ok else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ready.put(server.server_address[1])
    stop.wait()
    server.shutdown()
    server.server_close()
    results.put(counts)


ready, results, stop = multiprocessing.Queue(), multiprocessing.Queue(), multiprocessing.Event()
receiver = multiprocessing.Process(target=receive, args=(ready, stop, results))
receiver.start()
hook = f"http://127.0.0.1:{ready.get(timeout=30)}/magento/webhook"

with SandboxStore(
    webhook_url=hook,
    webhook_secret=SECRET,
    envelope=args.envelope,
    seed=args.seed,
    senders=args.senders,
) as store:
    started = time.monotonic()
    result = store.run_scenario(orders=args.orders, steps=["place", "invoice", "ship"])
    produced = time.monotonic() - started
    idle = store.wait_idle(300)
    total = time.monotonic() - started
    status = store.status()["delivery"]

    settings = store.settings()
    auth = OAuth1(
        settings["MAGENTO_CONSUMER_KEY"],
        settings["MAGENTO_CONSUMER_SECRET"],
        settings["MAGENTO_ACCESS_TOKEN"],
        settings["MAGENTO_ACCESS_TOKEN_SECRET"],
        signature_method=SIGNATURE_HMAC_SHA256,
    )
    read_started = time.monotonic()
    seen, page = 0, 1
    with requests.Session() as session:
        while True:
            params = {
                "searchCriteria[sortOrders][0][field]": "updated_at",
                "searchCriteria[sortOrders][0][direction]": "ASC",
                "searchCriteria[pageSize]": 300,
                "searchCriteria[currentPage]": page,
            }
            answer = session.get(f"{store.url}/rest/V1/orders", params=params, auth=auth).json()
            seen += len(answer["items"])
            if page * 300 >= answer["total_count"]:
                break
            page += 1
    read_time = time.monotonic() - read_started

stop.set()
counts = results.get(timeout=30)
receiver.join(30)

webhooks = result["saves"]
print(f"orders:                 {result['orders']} (placed, invoiced, shipped)")
print(f"webhooks:               {webhooks} ({args.envelope} envelope, {args.senders} senders)")
print(f"saves produced in:      {produced:.2f} s ({webhooks / produced:.0f} saves/s)")
print(f"all delivered in:       {total:.2f} s ({webhooks / total:.0f} webhooks/s)  idle={idle}")
print(f"delivered / attempts:   {status['delivered']} / {status['attempts']}")
print(f"signatures verified:    {counts['verified']} (bad: {counts['bad']})")
print(f"per-order out of order: {counts['out_of_order']}")
print(f"REST read of all:       {seen} orders in {page} pages, {read_time:.2f} s")
print(f"under a minute:         {'yes' if total < 60 else 'NO'}")
