"""``magsync clock`` (the reconcile schedule) and ``magsync reconcile`` (watermark, one pass)."""

import datetime as dt
import logging
import signal

import click

from magsync.cli.base import exec_process, load_settings
from magsync.settings import MAGENTO_REST

log = logging.getLogger("magsync.clock")

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def reconcile_off_reason(settings):
    """Why reconciliation is off with ``settings`` (None when it is on)."""
    if not settings.magento_rest_enabled:
        missing = ", ".join(settings.unset(*MAGENTO_REST))
        return f"the store's REST API is not configured ({missing} not set)"
    if settings.reconcile_interval <= 0:
        return "MAGSYNC_RECONCILE_INTERVAL is 0"
    return None


def record_first_run(settings):
    """Record when magsync first ran against the store (a first pass starts there)."""
    from magsync.ledger import Ledger, LedgerUnavailable

    ledger = Ledger(settings)
    try:
        ledger.ready()
        mark = ledger.start_watermark(settings.store_key)
    except LedgerUnavailable as exc:
        log.warning("first run not recorded; the first pass records it", extra={"error": str(exc)})
        return None
    finally:
        ledger.close()
    return mark


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def clock(ctx):
    """Run the clock that schedules reconcile passes.

    Every MAGSYNC_RECONCILE_INTERVAL seconds Celery beat sends the magsync.reconcile task, and
    a worker runs the pass. Run exactly one clock (two do no harm, the second one's passes are
    skipped, but they are useless). Without the Magento REST settings, or with the interval 0,
    it logs once that reconciliation is off and idles. Extra arguments go to celery beat.
    """
    from magsync import alerts, logs

    settings = load_settings()
    logs.configure(settings.log_level)
    reason = reconcile_off_reason(settings)
    if reason is not None:
        log.warning("reconciliation is off; the clock idles", extra={"reason": reason})
        try:
            while True:  # idle, not exit: a process manager would restart it (and log again)
                signal.pause()
        except KeyboardInterrupt:
            return
    alerts.init(settings)
    mark = record_first_run(settings)
    log.info(
        "clock starting",
        extra={
            "interval": settings.reconcile_interval,
            "overlap": settings.reconcile_overlap,
            "first_run_at": mark and mark.first_run_at.strftime(TIME_FORMAT),
        },
    )
    exec_process(
        [
            "celery",
            "--app",
            "magsync.worker.entry",
            "beat",
            "--loglevel",
            settings.log_level,
            # Celery's in-memory scheduler: beat writes no schedule file (the default one,
            # celerybeat-schedule in the working folder, breaks where that folder is read-only
            # and is lost with a Heroku dyno anyway). After a restart the first pass comes one
            # interval later; the watermark, in the ledger, is what makes passes resume.
            "--scheduler",
            "celery.beat:Scheduler",
            *ctx.args,
        ]
    )


def _since(ctx, param, value):
    if value is None:
        return None
    from magsync.magento.walk import magento_time

    try:
        since = dt.datetime.strptime(magento_time(value), TIME_FORMAT)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if since > dt.datetime.now(dt.UTC).replace(tzinfo=None):
        # Passes would read nothing until then: reconciliation silently off.
        raise click.BadParameter(f"{value!r} is in the future (times are UTC)")
    return since


@click.command()
@click.option(
    "--since",
    callback=_since,
    metavar="DATE",
    help="Set the watermark: the next pass reads the orders updated since DATE (UTC, "
    "2024-05-01 or 2024-05-01 12:00:00) less MAGSYNC_RECONCILE_OVERLAP.",
)
@click.option("--now", "run_now", is_flag=True, help="Run one pass now, in this process.")
def reconcile(since, run_now):
    """Show or set the reconcile watermark, or run one pass.

    Without options it prints the watermark. A pass publishes what the ledger has not applied
    to the live queue, as the clock's passes do.
    """
    settings = load_settings()
    if not settings.magento_rest_enabled:
        raise click.ClickException(f"reconciliation is off: {reconcile_off_reason(settings)}")
    from magsync.ledger import Ledger, LedgerUnavailable

    ledger = Ledger(settings)
    try:
        ledger.ready()
        if since is not None:
            ledger.set_watermark(settings.store_key, since)
        if run_now:
            _run_pass(settings)
        _show(settings, ledger.watermark(settings.store_key))
    except LedgerUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        ledger.close()


def _run_pass(settings):
    from magsync.errors import SyncError
    from magsync.messaging.app import create_celery
    from magsync.messaging.broker import BrokerUnavailable, Publisher
    from magsync.sync.reconcile import run_pass
    from magsync.sync.services import Services

    app = create_celery(settings)
    publisher = Publisher(app, app.magsync_topology, settings.publish_timeout)
    services = Services.build(settings)
    try:
        result = run_pass(services, publisher.publish_all)
    except (SyncError, BrokerUnavailable) as exc:
        raise click.ClickException(f"the pass failed, the watermark stays: {exc}") from None
    finally:
        publisher.close()
        services.close()
    if result.skipped:
        click.echo(f"pass skipped: {result.skipped}")
    else:
        click.echo(
            f"pass done: {result.scanned} orders read since {result.since}, "
            f"{result.published} published ({result.new} new to the ledger)"
        )


def _show(settings, mark):
    click.echo(f"store: {settings.store_key}")
    if mark is None:
        click.echo("no watermark: magsync never ran against this store")
        return
    click.echo(f"first run:  {mark.first_run_at.strftime(TIME_FORMAT)} UTC")
    if mark.updated_at is None:
        click.echo("watermark:  none yet (the next pass starts at the first run)")
    else:
        click.echo(f"watermark:  {mark.updated_at.strftime(TIME_FORMAT)} UTC")
    overlap = dt.timedelta(seconds=settings.reconcile_overlap)
    click.echo(f"next pass reads from {(mark.since - overlap).strftime(TIME_FORMAT)} UTC")
