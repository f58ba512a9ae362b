"""Driver of scripts/chaos (see there)."""

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.chaos import ChaosConfig, ChaosRun  # noqa: E402
from tests.rabbitmq_node import find_scripts  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("orders", type=int, nargs="?", default=5000)
    parser.add_argument("--duration", type=float, default=None, help="seconds of store activity")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=5.0)
    parser.add_argument("--settle-timeout", type=float, default=3600.0)
    args = parser.parse_args()
    if find_scripts() is None:
        sys.exit("scripts/chaos needs rabbitmq-server: it runs a RabbitMQ node of its own")
    config = ChaosConfig(
        orders=args.orders,
        duration=args.duration or max(30.0, args.orders / 25),
        workers=args.workers,
        concurrency=args.concurrency,
        kill_every=args.kill_every,
        permanent=max(3, args.orders // 1000),
        settle_timeout=args.settle_timeout,
    )
    workdir = Path(tempfile.mkdtemp(prefix="magsync-chaos-"))
    print(f"chaos run: {config}")
    print(f"logs in {workdir / 'logs'}")
    report = ChaosRun(config, workdir).run()
    print("\n".join(report.lines()))
    print("RESULT:", "OK" if report.ok() else "FAILED")
    sys.exit(0 if report.ok() else 1)


if __name__ == "__main__":
    main()
