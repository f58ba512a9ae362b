"""Driver of scripts/bench_webhook (see there)."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from magsync.magento.signature import sign  # noqa: E402
from magsync.sandbox.magento import SandboxStore  # noqa: E402
from tests import processes  # noqa: E402
from tests.helpers import delete_namespace, queue_depth  # noqa: E402

BROKER = os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
SECRET = "bench-webhook-secret"  # noqa: S105 - the benchmark's own throwaway webhook secret
ADOBE_CLIENT_ID = "bench-io-project"
WEB = {
    "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY", "2"),
    "GUNICORN_THREADS": os.environ.get("GUNICORN_THREADS", "8"),
}


def wrk(url, body, headers, seconds, connections):
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115
    script.write('wrk.method = "POST"\n' + f"wrk.body = {json.dumps(body.decode())}\n")
    for name, value in {"Content-Type": "application/json", **headers}.items():
        script.write(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n")
    script.close()
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+(\S+)", out).group(1)
    return rate, total, int(non2xx.group(1)) if non2xx else 0, p99


def adobe_delivery(keys):
    """The recorded Adobe event, for the bench's I/O project, and Adobe's headers for it."""
    document = json.loads((ROOT / "tests/fixtures/adobe_io_event.json").read_text())
    document.update(eventid="bench-event-1", recipientclientid=ADOBE_CLIENT_ID)
    body = json.dumps(document).encode()
    return body, {**keys.headers(body), "x-adobe-event-id": "bench-event-1"}


def warm(url, body, headers, requests_=20):
    """Fetch the public keys into every web process's cache before measuring."""
    import requests

    with requests.Session() as session:
        for _ in range(requests_):
            answer = session.post(
                url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=10
            )
            if answer.status_code != 202:
                sys.exit(f"warm-up answered {answer.status_code}: {answer.text}")


def run(env, logs, base_app, seconds, connections, cases):
    """``{name: wrk result}`` for each ``(name, app, path, body, headers, warm)`` in ``cases``;
    cases of one app share one gunicorn run."""
    results = {}
    for app, extra in base_app:
        proc, base = processes.start_web(
            {**env, **extra},
            logs,
            threads=int(WEB["GUNICORN_THREADS"]),
            workers=int(WEB["WEB_CONCURRENCY"]),
            app=app,
        )
        try:
            time.sleep(1.0)
            for name, case_app, path, body, headers, warm_up in cases:
                if case_app != app:
                    continue
                if warm_up:
                    warm(base + path, body, headers)
                results[name] = wrk(base + path, body, headers, seconds, connections)
        finally:
            proc.stop()
    return results


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    connections = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    body = json.dumps(json.loads((ROOT / "tests/fixtures/seed_webhook.json").read_text())).encode()
    seed_headers = {"X-Magento-Signature": sign(body, SECRET)}
    namespace = f"magsync-bench-{int(time.time())}"
    logs = Path(tempfile.mkdtemp(prefix="magsync-bench-"))
    # The sandbox store stands in for Adobe's key host (it serves the keys it signs with).
    key_host = SandboxStore(adobe_client_id=ADOBE_CLIENT_ID).start()
    adobe_body, adobe_headers = adobe_delivery(key_host.adobe_keys)
    magsync = "magsync.web:create_app()"
    bare = "bare_app:create_app()"
    try:
        env = {
            **WEB,
            "CELERY_BROKER_URL": BROKER,
            "MAGSYNC_BROKER_NAMESPACE": namespace,
            "MAGENTO_WEBHOOK_SECRET": SECRET,
            **key_host.adobe_settings(),
            "LOG_LEVEL": "WARNING",
            "GUNICORN_ACCESS_LOG": "0",
        }
        results = run(
            env,
            logs,
            [(bare, {"PYTHONPATH": str(ROOT / "scripts/bench")}), (magsync, {})],
            seconds,
            connections,
            [
                ("bare Flask", bare, "/magento/webhook", body, seed_headers, False),
                # A-B-B-A in one gunicorn run: a rate that drifts as the queue fills (or as the
                # machine's load changes) weighs on both routes alike.
                ("adobe", magsync, "/adobe/events", adobe_body, adobe_headers, True),
                ("magsync", magsync, "/magento/webhook", body, seed_headers, False),
                ("magsync 2", magsync, "/magento/webhook", body, seed_headers, False),
                ("adobe 2", magsync, "/adobe/events", adobe_body, adobe_headers, False),
            ],
        )
        results = {name: result for name, result in results.items() if " 2" not in name} | {
            name: combine(results[name], results[f"{name} 2"]) for name in ("magsync", "adobe")
        }
        queued = queue_depth(BROKER, f"{namespace}.orders")
    finally:
        delete_namespace(BROKER, namespace)
        key_host.stop()
    report(results, queued, seconds, connections)


def combine(first, second):
    """Two wrk runs as one: mean rate, summed counts, the worse p99."""
    p99 = max(first[3], second[3], key=_milliseconds)
    return (first[0] + second[0]) / 2, first[1] + second[1], first[2] + second[2], p99


def _milliseconds(text):
    value = float(re.match(r"[\d.]+", text).group(0))
    return value * {"us": 0.001, "ms": 1, "s": 1000}[re.search(r"[a-z]+$", text).group(0)]


def report(results, queued, seconds, connections):
    bare, magsync, adobe = results["bare Flask"], results["magsync"], results["adobe"]
    print(
        f"load: wrk -t2 -c{connections} -d{seconds}s, gunicorn gthread "
        f"{WEB['WEB_CONCURRENCY']} processes x {WEB['GUNICORN_THREADS']} threads"
    )
    labels = {
        "bare Flask": "bare Flask",
        "magsync": "magsync /magento/webhook (2 runs)",
        "adobe": "magsync /adobe/events (2 runs, warm key cache)",
    }
    for name, (rate, total, non2xx, p99) in results.items():
        print(
            f"{labels[name]:>46}: {rate:8.1f} req/s  {total} requests  non-2xx {non2xx}  p99 {p99}"
        )
    # 20 warm-up requests were published before the measured Adobe run.
    accepted = magsync[1] - magsync[2] + adobe[1] - adobe[2] + 20
    # wrk stops counting at the deadline while the server finishes requests in flight, so the
    # queue may hold a few more messages than wrk saw 202s; never fewer.
    print(f"messages in queue: {queued} for {accepted} answers 202 (wrk and warm-up)")
    print(f"ratio magsync / bare: {magsync[0] / bare[0]:.2f}")
    print(f"ratio /adobe/events / /magento/webhook: {adobe[0] / magsync[0]:.2f}")
    if queued < accepted:
        sys.exit("MISMATCH: a 202 without a queued message")


if __name__ == "__main__":
    main()
