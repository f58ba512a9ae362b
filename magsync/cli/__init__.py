"""The ``magsync`` command: processes, operations and the local sandboxes."""

import os
from pathlib import Path

import click

from magsync.cli.base import LazyGroup, celery_app, exec_process, load_settings
from magsync.settings import ConfigError


@click.group(
    cls=LazyGroup,
    lazy_commands={
        "db": "magsync.cli.ledger:db",
        "trace": "magsync.cli.ledger:trace",
        "dead": "magsync.cli.dead:dead",
        "backfill": "magsync.cli.backfill:backfill",
        "clock": "magsync.cli.reconcile:clock",
        "reconcile": "magsync.cli.reconcile:reconcile",
        "sandbox": "magsync.sandbox.cli:sandbox",
        "stack": "magsync.sandbox.cli:stack",
    },
)
@click.version_option(package_name="magsync")
@click.option(
    "--env-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read settings (KEY=value lines) from this file first; its values win over the "
    "environment's. `magsync stack` writes one for its demo.",
)
def main(env_file):
    """magsync keeps Salesforce in step with a Magento 2 store."""
    if env_file is not None:
        load_env_file(env_file)


def load_env_file(path):
    """Put the settings of ``path`` into ``os.environ``, before any command reads them.

    The file wins over the environment: it is named on the command line, the most specific
    place, and a shell that still holds another deployment's settings must not redirect
    commands meant for the file's deployment. Variables the file does not name are kept.
    """
    from magsync.cli.env_file import EnvFileError, read_env_file

    try:
        os.environ.update(read_env_file(path))
    except EnvFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--env-file") from None


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--queues",
    default="orders",
    show_default=True,
    help="The queues to consume, comma-separated: orders (live orders), backfill (what "
    "`magsync backfill` publishes), or full queue names. The Procfile's backfill process runs "
    "`magsync worker --queues backfill`.",
)
@click.pass_context
def worker(ctx, queues):
    """Run the Celery worker that syncs orders.

    With MAGSYNC_BATCH_SIZE above 1 (the default) it runs MAGSYNC_WORKER_THREADS threads that
    share Salesforce calls, else MAGSYNC_WORKER_CONCURRENCY processes of one order each. Extra
    arguments go to celery worker (--concurrency N sets the threads or processes). A Salesforce
    token is obtained first: missing settings or credentials Salesforce refuses stop the worker
    at once with the cause and the fix (orders wait in RabbitMQ); an unreachable Salesforce only
    warns.
    """
    from magsync import alerts, logs
    from magsync.check.startup import CredentialsRefused, salesforce_token

    settings = load_settings()
    logs.configure(settings.log_level)
    alerts.init(settings)
    try:
        warning = salesforce_token(settings)
    except (ConfigError, CredentialsRefused) as exc:
        raise click.ClickException(str(exc)) from None
    if warning:
        click.echo(f"magsync worker: {warning}", err=True)
    exec_process(
        [
            "celery",
            "--app",
            "magsync.worker.entry",
            "worker",
            "--loglevel",
            settings.log_level,
            "--pool",
            settings.worker_pool,
            "--concurrency",
            str(settings.worker_pool_size),
            "--queues",
            queue_names(queues, settings.broker_namespace),
            "--task-events",
            "--without-gossip",
            "--without-mingle",
            *ctx.args,
        ]
    )


def queue_names(queues, namespace):
    """Full queue names for ``--queues``: ``orders`` and ``backfill`` are the namespace's."""
    names = []
    for name in (part.strip() for part in queues.split(",")):
        if not name:
            continue
        names.append(f"{namespace}.{name}" if name in ("orders", "backfill") else name)
    if not names:
        raise click.BadParameter("name at least one queue", param_hint="--queues")
    return ",".join(names)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--port", envvar="PORT", default=5555, show_default=True)
@click.pass_context
def flower(ctx, port):
    """Run Flower, the task monitor, behind basic auth.

    FLOWER_BASIC_AUTH=user:password is required: a user must be named and the password be at
    least 12 characters long. Flower reads it from the environment itself, so the credentials
    never appear in the process list.
    """
    settings = load_settings()
    try:
        settings.require_flower_auth()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    exec_process(
        [
            "celery",
            "--app",
            "magsync.worker.entry",
            "flower",
            f"--port={port}",
            "--purge_offline_workers=60",
            *ctx.args,
        ]
    )


@main.command("rate-limit")
@click.argument("rate")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for replies.")
def rate_limit(rate, timeout):
    """Set the Salesforce call rate of every running worker.

    RATE looks like 5/s, 600/m or 10000/h: Salesforce calls a second (minute, hour) in each
    worker process. Every worker answers with the rate it set; each keeps it until it restarts,
    when SALESFORCE_RATE_LIMIT applies again.
    """
    from magsync.salesforce.pacing import calls_per_second
    from magsync.worker.pacing import RATE_LIMIT_COMMAND

    try:
        calls_per_second(rate)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="RATE") from None
    replies = celery_app(load_settings()).control.broadcast(
        RATE_LIMIT_COMMAND, arguments={"rate": rate.strip()}, reply=True, timeout=timeout
    )
    if not replies:
        raise click.ClickException("no worker answered: is any running on this broker?")
    failed = False
    for reply in replies:
        for node, answer in reply.items():
            failed = failed or "ok" not in answer
            click.echo(f"{node}: {answer.get('ok') or answer.get('error')}")
    if failed:
        raise SystemExit(1)


@main.command()
def check():
    """Check settings, Salesforce, Magento and RabbitMQ.

    Run it before going live: every finding in plain words, the fix under each failure, no
    secrets. Exits 1 when anything fails.
    """
    from magsync.check import main as run_check

    run_check()
