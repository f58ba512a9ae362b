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
from tests import processes  # noqa: E402
from tests.helpers import delete_namespace, queue_depth  # noqa: E402

BROKER = os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
SECRET = "bench-secret"  # noqa: S105 - the benchmark's own throwaway webhook secret
WEB = {
    "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY", "2"),
    "GUNICORN_THREADS": os.environ.get("GUNICORN_THREADS", "8"),
}


def wrk(url, body, signature, seconds, connections):
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115
    script.write(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["X-Magento-Signature"] = "{signature}"\n'
    )
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


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    connections = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    body = json.dumps(json.loads((ROOT / "tests/fixtures/seed_webhook.json").read_text())).encode()
    signature = sign(body, SECRET)
    namespace = f"magsync-bench-{int(time.time())}"
    logs = Path(tempfile.mkdtemp(prefix="magsync-bench-"))
    results = {}
    try:
        env = {
            **WEB,
            "CELERY_BROKER_URL": BROKER,
            "MAGSYNC_BROKER_NAMESPACE": namespace,
            "MAGENTO_WEBHOOK_SECRET": SECRET,
            "LOG_LEVEL": "WARNING",
            "GUNICORN_ACCESS_LOG": "0",
        }
        for name, app, extra in (
            ("bare Flask", "bare_app:create_app()", {"PYTHONPATH": str(ROOT / "scripts/bench")}),
            ("magsync", "magsync.web:create_app()", {}),
        ):
            proc, base = processes.start_web(
                {**env, **extra},
                logs,
                threads=int(WEB["GUNICORN_THREADS"]),
                workers=int(WEB["WEB_CONCURRENCY"]),
                app=app,
            )
            try:
                time.sleep(1.0)
                url = base + "/magento/webhook"
                results[name] = wrk(url, body, signature, seconds, connections)
            finally:
                proc.stop()
        queued = queue_depth(BROKER, f"{namespace}.orders")
    finally:
        delete_namespace(BROKER, namespace)
    bare, magsync = results["bare Flask"], results["magsync"]
    print(
        f"load: wrk -t2 -c{connections} -d{seconds}s, gunicorn gthread "
        f"{WEB['WEB_CONCURRENCY']} processes x {WEB['GUNICORN_THREADS']} threads"
    )
    for name, (rate, total, non2xx, p99) in results.items():
        print(f"{name:>11}: {rate:8.1f} req/s  {total} requests  non-2xx {non2xx}  p99 {p99}")
    accepted = magsync[1] - magsync[2]
    # wrk stops counting at the deadline while the server finishes requests in flight, so the
    # queue may hold a few more messages than wrk saw 202s; never fewer.
    print(f"messages in queue: {queued} for {accepted} answers 202 seen by wrk")
    print(f"ratio magsync / bare: {magsync[0] / bare[0]:.2f}")
    if queued < accepted:
        sys.exit("MISMATCH: a 202 without a queued message")


if __name__ == "__main__":
    main()
