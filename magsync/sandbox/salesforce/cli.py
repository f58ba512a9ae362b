"""``magsync sandbox salesforce``: run a sandbox Salesforce org until SIGTERM or SIGINT.

Prints the settings a client needs (``KEY=value`` lines for ``.env``) on stdout once it is
serving, then logs nothing unless something goes wrong.
"""

import signal
import sys
import threading

import click

from magsync.sandbox.salesforce import bulk
from magsync.sandbox.salesforce.faults import FaultError, FaultRule, parse_spec
from magsync.sandbox.salesforce.org import SandboxOrg


def _faults(ctx, param, values):
    specs = []
    try:
        for value in values:
            spec = parse_spec(value)
            FaultRule(spec)  # refuse a bad rule before anything starts
            specs.append(spec)
    except (FaultError, ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc)) from None
    return specs


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, type=int, help="Port; 0 picks a free one.")
@click.option(
    "--state-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Where the CA, certificates and connected-app keys live (created on first start).",
)
@click.option(
    "--token-ttl",
    default=7200.0,
    show_default=True,
    type=float,
    help="Seconds an access token lives.",
)
@click.option(
    "--daily-limit", default=5_000_000, show_default=True, type=int, help="Daily API allowance."
)
@click.option(
    "--max-in-flight",
    default=25,
    show_default=True,
    type=int,
    help="Concurrent data requests before 403 ConcurrentPerOrgLongTxn.",
)
@click.option(
    "--latency-ms", default=0.0, show_default=True, type=float, help="Fixed latency per call."
)
@click.option(
    "--jitter-ms",
    default=0.0,
    show_default=True,
    type=float,
    help="Extra random latency, up to this.",
)
@click.option(
    "--bulk-latency",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds a closed Bulk API 2.0 job waits as UploadComplete, and again as InProgress.",
)
@click.option(
    "--bulk-daily-batches",
    default=bulk.DAILY_BATCHES,
    show_default=True,
    type=int,
    help="Bulk API batches (10,000 records each) allowed in a rolling 24 hours.",
)
@click.option(
    "--bulk-daily-records",
    default=bulk.DAILY_RECORDS,
    show_default=True,
    type=int,
    help="Bulk API records allowed in a rolling 24 hours.",
)
@click.option(
    "--schema",
    "schema_path",
    type=click.Path(dir_okay=False, exists=True),
    help="A variant org schema (JSON).",
)
@click.option(
    "--fault",
    "fault_specs",
    multiple=True,
    callback=_faults,
    help="A fault rule: JSON, or key=value words such as "
    "'kind=unavailable method=PATCH count=3'. Repeatable.",
)
def command(
    host,
    port,
    state_dir,
    token_ttl,
    daily_limit,
    max_in_flight,
    latency_ms,
    jitter_ms,
    bulk_latency,
    bulk_daily_batches,
    bulk_daily_records,
    schema_path,
    fault_specs,
):
    """Run the sandbox Salesforce org.

    It serves HTTPS: the OAuth JWT bearer flow, the REST data API and Bulk API 2.0 ingest.
    """
    try:
        org = SandboxOrg(
            state_dir,
            host=host,
            port=port,
            token_ttl=token_ttl,
            daily_limit=daily_limit,
            max_in_flight=max_in_flight,
            schema=schema_path,
            latency_ms=latency_ms,
            jitter_ms=jitter_ms,
            fault_specs=fault_specs,
            bulk_latency=bulk_latency,
            bulk_daily_batches=bulk_daily_batches,
            bulk_daily_records=bulk_daily_records,
        ).start()
    except (OSError, FaultError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        for key, value in org.settings().items():
            click.echo(f"{key}={value}")
        sys.stdout.flush()
        click.echo(f"sandbox Salesforce org serving at {org.url}", err=True)
        while not stop.wait(1.0):
            pass
    finally:
        org.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
