"""``magsync backfill``: sync the store's order history, with a progress bar."""

import signal
import sys
import threading
import time

import click

from magsync.cli.base import celery_app, load_settings
from magsync.settings import MAGENTO_REST, ConfigError

# Seconds between progress lines when the output is not a terminal.
LOG_EVERY = 5.0
BAR_WIDTH = 24
STOPPED_EXIT = 130  # as a shell reports a command Ctrl-C ended


@click.command()
@click.option(
    "--since",
    required=True,
    help="Orders updated at or after this date or time (UTC): 2024-01-01, 2024-01-01 08:00:00.",
)
@click.option("--until", default=None, help="Only orders updated before this date or time (UTC).")
@click.option(
    "--store",
    "store_code",
    default=None,
    help="Only the orders of this store view (its code, such as default).",
)
@click.option("--dry-run", is_flag=True, help="Only count new, changed and unchanged orders.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until the backfill worker has synced every order published.",
)
def backfill(since, until, store_code, dry_run, wait):
    """Sync the store's order history that Salesforce lacks.

    Walks the store's orders oldest first, one page at a time; an order the ledger already
    applied in that version costs nothing. Up to MAGSYNC_BULK_THRESHOLD orders go to the backfill
    queue, synced by the backfill worker (`magsync worker --queues backfill`); more are written
    here with Bulk API 2.0. Ctrl-C stops after the current page; the same command again resumes
    where it stopped.
    """
    plan = _plan(since, until, store_code, dry_run, wait)
    settings = load_settings()
    try:
        settings.require(*MAGENTO_REST)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    counts, stopped = _run(settings, plan)
    _summary(counts, stopped, plan)
    if stopped:
        sys.exit(STOPPED_EXIT)


def _plan(since, until, store_code, dry_run, wait):
    from magsync.magento.walk import magento_time
    from magsync.sync.backfill import Plan

    try:
        start = magento_time(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    try:
        end = magento_time(until, round_up=True) if until else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--until") from None
    if end is not None and end <= start:
        raise click.BadParameter("must be later than --since", param_hint="--until")
    return Plan(start, end, store_code or None, dry_run, wait)


def _run(settings, plan):
    from magsync import logs
    from magsync.errors import SyncError
    from magsync.messaging.broker import BrokerUnavailable
    from magsync.sync.backfill import Backfill

    logs.configure("WARNING")
    stop = threading.Event()
    progress = Progress(sys.stderr)
    try:
        services, sinks, close = _wire(settings, plan, stop, progress)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    previous = signal.signal(signal.SIGINT, _interrupt(stop, progress))
    run = Backfill(services, plan, sinks)
    try:
        counts = run.run()
    except ValueError as exc:  # an unknown store view
        raise click.BadParameter(str(exc), param_hint="--store") from None
    except (SyncError, BrokerUnavailable) as exc:
        progress.end()
        raise click.ClickException(f"backfill stopped: {exc}; run it again to resume") from None
    finally:
        signal.signal(signal.SIGINT, previous)
        close()
    progress.show(counts, final=True)
    return counts, run.stopped


def _wire(settings, plan, stop, progress):
    """``(services, sinks, close)``: the ledger, Magento and Salesforce clients, the backfill
    queue's publisher, the dead letters and the Bulk API client of this run."""
    from magsync.messaging.broker import Publisher
    from magsync.messaging.dead_letters import DeadLetters
    from magsync.messaging.group_commit import GroupCommitPublisher
    from magsync.salesforce.bulk import BulkClient
    from magsync.sync.backfill import Sinks
    from magsync.sync.services import Services
    from magsync.worker import pacing

    services = Services.build(settings)
    sinks = Sinks(progress=progress.show, stop=stop)
    if plan.dry_run:
        return services, sinks, services.close
    celery = celery_app(settings)
    topology = celery.magsync_topology
    kind = GroupCommitPublisher if settings.broker_is_rabbitmq else Publisher
    publisher = kind(celery, topology, settings.publish_timeout, backfill=True)
    dead_letters = DeadLetters(celery, topology, settings.publish_timeout)
    writer = services.writer
    sinks.publish = publisher.publish_all
    sinks.set_aside = lambda event, task_id, error: dead_letters.put_order(
        event, task_id, error, time.time()
    )
    sinks.bulk = BulkClient(settings, writer.tokens, writer.session, writer.rest)
    _warn_without_worker(celery, topology, settings, progress)
    # The org's usage pauses the bulk path as it pauses the backfill worker.
    pacing.start(None, settings, lambda: services)

    def close():
        publisher.close()
        services.close()

    return services, sinks, close


def _warn_without_worker(celery, topology, settings, progress):
    from magsync.messaging.broker import consumers

    if consumers(celery, topology.backfill_queue, settings.publish_timeout) == 0:
        progress.note(
            f"warning: no backfill worker consumes {topology.backfill_queue.name}: the orders "
            "this backfill publishes wait there until one runs (scale the Procfile's backfill "
            "process up)"
        )


def _interrupt(stop, progress):
    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        progress.note("stopping after this page (Ctrl-C again to quit at once)")

    return handler


def _summary(counts, stopped, plan):
    if plan.dry_run:
        click.echo(
            f"dry run: {counts.scanned} orders scanned: {counts.new} new, {counts.changed} "
            f"changed, {counts.unchanged} unchanged (nothing was published or written)"
        )
        return
    elapsed = time.monotonic() - counts.started
    resumed = f", resumed after {counts.resumed_from}" if counts.resumed_from else ""
    figures = (
        f"{counts.scanned} scanned, {counts.to_sync} to sync, {counts.synced} synced, "
        f"{counts.failed} failed ({counts.mode}, {elapsed:.1f}s{resumed})"
    )
    if stopped:
        click.echo(f"backfill stopped: {figures}; run the same command again to resume")
    else:
        click.echo(f"backfill finished: {figures}")
        if counts.failed:
            click.echo("failed orders are dead letters: magsync dead list")


class Progress:
    """The run's progress on ``stream``: a bar redrawn in place on a terminal, else a line every
    ``LOG_EVERY`` seconds."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self._last = 0.0
        self._drawn = False

    def show(self, counts, final=False):
        now = time.monotonic()
        if not final and not self.tty and now - self._last < LOG_EVERY:
            return
        self._last = now
        if self.tty:
            self.stream.write("\r" + bar_line(counts) + "\x1b[K")
            self._drawn = True
            if final:
                self.end()
        else:
            self.stream.write(log_line(counts) + "\n")
        self.stream.flush()

    def note(self, text):
        self.end()
        self.stream.write(f"{text}\n")
        self.stream.flush()

    def end(self):
        if self._drawn:
            self.stream.write("\n")
            self._drawn = False


def _rate_and_eta(counts):
    elapsed = max(time.monotonic() - counts.started, 1e-6)
    total = counts.total or 0
    scanning = counts.scanned < total
    if scanning:
        done, left = counts.scanned - counts.resumed_from, total - counts.scanned
    else:
        done = counts.synced + counts.failed
        left = counts.to_sync - done
    rate = done / elapsed
    eta = left / rate if rate > 0 else None
    return rate, eta, scanning


def _eta_text(eta):
    if eta is None:
        return "--:--"
    minutes, seconds = divmod(int(eta), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"


def bar_line(counts):
    """The progress bar: share scanned, the four counts, rate and ETA."""
    total = counts.total or 0
    share = counts.scanned / total if total else 1.0
    filled = int(share * BAR_WIDTH)
    rate, eta, scanning = _rate_and_eta(counts)
    unit = "scanned/s" if scanning else "synced/s"
    return (
        f"backfill [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:4.0%}  "
        f"scanned {counts.scanned}/{total}  to sync {counts.to_sync}  synced {counts.synced}  "
        f"failed {counts.failed}  {rate:.0f} {unit}  ETA {_eta_text(eta)}"
    )


def log_line(counts):
    """One progress line for a log."""
    rate, eta, scanning = _rate_and_eta(counts)
    unit = "scanned/s" if scanning else "synced/s"
    return (
        f"backfill: scanned {counts.scanned}/{counts.total or 0}, to sync {counts.to_sync}, "
        f"synced {counts.synced}, failed {counts.failed}, {rate:.0f} {unit}, "
        f"eta {_eta_text(eta)} ({counts.mode})"
    )
