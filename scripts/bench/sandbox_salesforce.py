"""Benchmark the sandbox Salesforce org: single-record upserts over keep-alive HTTPS.

Starts ``python -m magsync sandbox salesforce`` as a subprocess (no latency, no faults), gets one
access token per client process through the JWT bearer grant, then has each client process
upsert Opportunities by ``Magento_Order_ID__c`` with simple-salesforce (direct session mode, one
keep-alive ``requests.Session`` each) for ``--seconds``. Every order is upserted twice (a create,
then an update). Prints upserts per second and latency percentiles, then stops the org with
SIGTERM.

    scripts/bench_sandbox_salesforce [--clients 4] [--seconds 10] [--warmup 1]
"""

import argparse
import multiprocessing
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jwt
import requests
from simple_salesforce import Salesforce

ROOT = Path(__file__).resolve().parents[2]


def start_org(state_dir):
    """The org subprocess and its settings (read from its KEY=value lines)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "magsync",
            "sandbox",
            "salesforce",
            "--port",
            "0",
            "--state-dir",
            state_dir,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    settings = {}
    while len(settings) < 5:
        line = process.stdout.readline()
        if not line:
            raise SystemExit("the sandbox org exited before printing its settings")
        key, _, value = line.strip().partition("=")
        settings[key] = value
    return process, settings


def session_for(settings):
    session = requests.Session()
    session.verify = settings["SALESFORCE_CA_BUNDLE"]
    # requests lets REQUESTS_CA_BUNDLE in the environment override Session.verify.
    session.trust_env = False
    return session


def token(settings, session):
    """An access token through the JWT bearer grant, as a magsync worker gets one."""
    key = Path(settings["SALESFORCE_PRIVATE_KEY_PATH"]).read_text()
    claims = {
        "iss": settings["SALESFORCE_CLIENT_ID"],
        "sub": settings["SALESFORCE_USERNAME"],
        "aud": "https://login.salesforce.com",
        "exp": int(time.time()) + 120,
    }
    response = session.post(
        settings["SALESFORCE_LOGIN_URL"] + "/services/oauth2/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": jwt.encode(claims, key, algorithm="RS256"),
        },
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def client(index, settings, warmup, seconds, start_at, results):
    session = session_for(settings)
    grant = token(settings, session)
    sf = Salesforce(
        instance_url=grant["instance_url"],
        session_id=grant["access_token"],
        session=session,
        version="58.0",
    )
    latencies = []
    count = 0

    def upsert(n):
        order = f"B{index:02d}{n // 2:08d}"
        body = {
            "Name": f"Order {order} - Bench Buyer",
            "StageName": "Prospecting" if n % 2 == 0 else "Closed Won",
            "CloseDate": "2024-01-31",
            "Amount": 99.99 + n % 7,
            "Magento_Customer_Email__c": "buyer@example.com",
            "LeadSource": "Magento E-commerce",
        }
        return sf.Opportunity.upsert(f"Magento_Order_ID__c/{order}", body)

    while time.time() < start_at:
        time.sleep(0.001)
    deadline = start_at + warmup
    while time.time() < deadline:
        upsert(count)
        count += 1
    deadline += seconds
    while time.time() < deadline:
        begin = time.perf_counter()
        upsert(count)
        latencies.append(time.perf_counter() - begin)
        count += 1
    session.close()
    results.put(latencies)


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured warm-up per client")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sf-") as state_dir:
        process, settings = start_org(state_dir)
        try:
            results = multiprocessing.Queue()
            start_at = time.time() + 1.0
            workers = [
                multiprocessing.Process(
                    target=client, args=(i, settings, args.warmup, args.seconds, start_at, results)
                )
                for i in range(args.clients)
            ]
            for worker in workers:
                worker.start()
            latencies = []
            for _ in workers:
                latencies.extend(results.get(timeout=args.seconds + args.warmup + 60))
            for worker in workers:
                worker.join()
            session = session_for(settings)
            stats = session.get(
                settings["SALESFORCE_LOGIN_URL"] + "/_sandbox/stats", timeout=10
            ).json()
            session.close()
        finally:
            process.send_signal(signal.SIGTERM)
            exit_code = process.wait(timeout=30)
    total = len(latencies)
    print(
        f"clients            {args.clients} processes, keep-alive HTTPS, simple-salesforce upsert"
    )
    print(f"measured           {total} upserts in {args.seconds:.1f} s")
    print(f"throughput         {total / args.seconds:.0f} upserts/s")
    for label, fraction in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        print(f"latency {label}        {percentile(latencies, fraction) * 1000:.2f} ms")
    print(f"latency max        {max(latencies) * 1000:.2f} ms")
    print(f"org api calls      {stats['calls_by_kind']}  token requests {stats['token_requests']}")
    print(f"org responses      {stats['responses']}")
    print(f"org exit code      {exit_code}")


if __name__ == "__main__":
    main()
