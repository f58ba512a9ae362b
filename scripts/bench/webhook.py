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

from kombu import Connection  # noqa: E402

from magsync.magento.signature import sign  # noqa: E402
from magsync.sandbox.magento import SandboxStore  # noqa: E402
from tests import processes  # noqa: E402
from tests.helpers import delete_namespace  # noqa: E402

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


def drained(queue):
    """The messages ``queue`` (the run's own) holds, counted, then removed: each case starts
    with it empty, as a web process's queue stays when workers consume it."""
    with Connection(BROKER) as conn:
        try:
            _, count, _ = conn.default_channel.queue_declare(queue, passive=True)
        except conn.channel_errors:
            return 0
        conn.default_channel.queue_purge(queue)
        return count


def run(env, logs, apps, seconds, connections, cases, queue):
    """``[(name, wrk result, messages queued), ...]`` for each ``(name, app, path, body,
    headers, warm)`` of ``cases``, in order; each app of ``apps`` (``{app: extra
    environment}``) runs in one gunicorn for the whole run, so the cases of different apps can
    alternate. ``queue`` is counted and emptied after each case."""
    servers, results = {}, []
    try:
        for app, extra in apps.items():
            servers[app] = processes.start_web(
                {**env, **extra},
                logs,
                threads=int(WEB["GUNICORN_THREADS"]),
                workers=int(WEB["WEB_CONCURRENCY"]),
                app=app,
            )
        time.sleep(1.0)
        for name, app, path, body, headers, warm_up in cases:
            base = servers[app][1]
            if warm_up:
                warm(base + path, body, headers)
                drained(queue)
            result = wrk(base + path, body, headers, seconds, connections)
            time.sleep(0.5)  # requests wrk gave up on at its deadline finish
            results.append((name, result, drained(queue)))
    finally:
        for proc, _ in servers.values():
            proc.stop()
    return results


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    connections = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    if not shutil.which("wrk"):
        sys.exit(
            "wrk is not installed: apt-get install -y wrk (Debian, Ubuntu) or brew install wrk"
        )
    body = json.dumps(json.loads((ROOT / "tests/fixtures/seed_webhook.json").read_text())).encode()
    seed_headers = {"X-Magento-Signature": sign(body, SECRET)}
    namespace = f"magsync-bench-{int(time.time())}"
    logs = Path(tempfile.mkdtemp(prefix="magsync-bench-"))
    # The sandbox store stands in for Adobe's key host (it serves the keys it signs with).
    key_host = SandboxStore(adobe_client_id=ADOBE_CLIENT_ID).start()
    adobe_body, adobe_headers = adobe_delivery(key_host.adobe_keys)
    magsync = "magsync.web:create_app()"
    bare = "bare_app:create_app()"
    unbrokered = "unbrokered_app:create_app()"
    seed = ("/magento/webhook", body, seed_headers)
    adobe = ("/adobe/events", adobe_body, adobe_headers)
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
        # A-B-C-D-D-C-B-A: a rate that drifts (the machine's other load) weighs on every case
        # alike.
        bench_path = {"PYTHONPATH": str(ROOT / "scripts/bench")}
        results = run(
            env,
            logs,
            {bare: bench_path, magsync: {}, unbrokered: bench_path},
            seconds,
            connections,
            [
                ("bare Flask", bare, *seed, False),
                ("magsync", magsync, *seed, False),
                ("no broker", unbrokered, *seed, False),
                ("adobe", magsync, *adobe, True),
                ("adobe", magsync, *adobe, False),
                ("no broker", unbrokered, *seed, False),
                ("magsync", magsync, *seed, False),
                ("bare Flask", bare, *seed, False),
            ],
            f"{namespace}.orders",
        )
    finally:
        delete_namespace(BROKER, namespace)
        key_host.stop()
    report(results, seconds, connections)


def report(results, seconds, connections):
    print(
        f"load: wrk -t2 -c{connections} -d{seconds}s, gunicorn gthread "
        f"{WEB['WEB_CONCURRENCY']} processes x {WEB['GUNICORN_THREADS']} threads"
    )
    labels = {
        "bare Flask": "bare Flask",
        "magsync": "magsync /magento/webhook",
        "no broker": "magsync, no broker (ceiling)",
        "adobe": "magsync /adobe/events (warm key cache)",
    }
    short = []
    for name, (rate, total, non2xx, p99), queued in results:
        accepted = total - non2xx if name in ("magsync", "adobe") else 0
        print(
            f"{labels[name]:>40}: {rate:8.1f} req/s  {total} requests  non-2xx {non2xx}  "
            f"p99 {p99}" + (f"  queued {queued} for {accepted} answers 202" if accepted else "")
        )
        # wrk stops counting at the deadline while the server finishes requests in flight, so
        # the queue may hold a few more messages than wrk saw 202s; never fewer.
        if queued < accepted:
            short.append(name)
    runs = {name: [r for n, r, _ in results if n == name] for name in labels}
    mean = {name: sum(r[0] for r in rs) / len(rs) for name, rs in runs.items()}
    print("means: " + ", ".join(f"{labels[name]} {rate:.1f} req/s" for name, rate in mean.items()))
    print(f"ratio magsync / bare: {mean['magsync'] / mean['bare Flask']:.2f}")
    print(
        f"ratio magsync without a broker / bare: {mean['no broker'] / mean['bare Flask']:.2f} "
        "(the ceiling the receiver's own work leaves; the rest is publishing and confirms)"
    )
    print(f"ratio /adobe/events / /magento/webhook: {mean['adobe'] / mean['magsync']:.2f}")
    if short:
        sys.exit(f"MISMATCH: a 202 without a queued message ({', '.join(short)})")


if __name__ == "__main__":
    main()
