"""The ``magsync`` command: processes, operations and the local sandboxes."""

import os
import shutil
import sys

import click

from magsync.settings import ConfigError, Settings


def load_settings():
    """Settings from the environment, or a clean exit naming what is wrong."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _exec(argv):
    """Replace this process with ``argv`` (so signals reach it directly, as Procfiles expect)."""
    executable = shutil.which(argv[0]) or argv[0]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(executable, argv)  # noqa: S606 - argv is a fixed command line, not user input


@click.group()
@click.version_option(package_name="magsync")
def main():
    """magsync keeps Salesforce in step with a Magento 2 store."""


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def worker(ctx):
    """Run the Celery worker (extra arguments go to ``celery worker``).

    A Salesforce token is obtained first: missing settings or credentials Salesforce refuses
    stop the worker at once with the cause and the fix (orders wait in RabbitMQ); an unreachable
    Salesforce only warns (see ``magsync.check.startup``).
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
    _exec(
        [
            "celery",
            "--app",
            "magsync.worker",
            "worker",
            "--loglevel",
            settings.log_level,
            "--concurrency",
            str(settings.worker_concurrency),
            "--queues",
            f"{settings.broker_namespace}.orders",
            "--task-events",
            "--without-gossip",
            "--without-mingle",
            *ctx.args,
        ]
    )


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--port", envvar="PORT", default=5555, show_default=True)
@click.pass_context
def flower(ctx, port):
    """Run Flower behind basic auth (``FLOWER_BASIC_AUTH=user:password``, required).

    Flower reads the credentials from the environment itself, so they never appear in the
    process list.
    """
    settings = load_settings()
    if not settings.flower_basic_auth or ":" not in settings.flower_basic_auth:
        raise click.ClickException(
            "FLOWER_BASIC_AUTH must be set to user:password (Flower is never served without auth)"
        )
    _exec(
        [
            "celery",
            "--app",
            "magsync.worker",
            "flower",
            f"--port={port}",
            "--purge_offline_workers=60",
            *ctx.args,
        ]
    )


@main.command()
@click.option("--var", "var", default="var", show_default=True, help="State and logs folder.")
@click.option("--web-port", envvar="PORT", default=8000, show_default=True)
@click.option("--flower-port", envvar="FLOWER_PORT", default=5555, show_default=True)
@click.option("--org-port", envvar="SANDBOX_ORG_PORT", default=8443, show_default=True)
@click.option("--store-port", envvar="SANDBOX_STORE_PORT", default=8081, show_default=True)
@click.option("--demo-orders", default=3, show_default=True, help="Orders the sandbox places.")
@click.option("--exit-when-synced", is_flag=True, help="Stop once the demo orders synced.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds the demo may take.")
def stack(var, web_port, flower_port, org_port, store_port, demo_orders, exit_when_synced, timeout):
    """Run web, worker and Flower, with the sandboxes for what is not configured."""
    from pathlib import Path

    from magsync import devstack

    root = Path.cwd()
    ports = {"web": web_port, "flower": flower_port, "org": org_port, "store": store_port}
    code = devstack.run(
        root,
        (root / var).resolve(),
        ports,
        demo_orders=demo_orders,
        exit_when_synced=exit_when_synced,
        timeout=timeout,
        echo=lambda line: click.echo(line),
    )
    sys.exit(code)


def _celery(settings):
    from magsync.celery_app import create_celery

    return create_celery(settings)


@main.command("rate-limit")
@click.argument("rate")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for replies.")
def rate_limit(rate, timeout):
    """Set the Salesforce call rate of every running worker (e.g. 5/s) until it restarts.

    Each worker applies RATE on its own; ``SALESFORCE_RATE_LIMIT`` is what a worker starts with.
    """
    from magsync.broker import SYNC_ORDER_TASK
    from magsync.settings import _rate_limit

    try:
        rate = _rate_limit(rate)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="RATE") from None
    replies = _celery(load_settings()).control.rate_limit(
        SYNC_ORDER_TASK, rate, reply=True, timeout=timeout
    )
    if not replies:
        raise click.ClickException("no worker answered: is any running on this broker?")
    for reply in replies:
        for node, answer in reply.items():
            click.echo(f"{node}: {answer.get('ok') or answer.get('error')}")


@main.group()
def dead():
    """Inspect, replay and purge dead letters (orders set aside with their reason)."""


def _dead_letters():
    from magsync.deadletters import DeadLetters

    settings = load_settings()
    celery = _celery(settings)
    return DeadLetters(celery, celery.magsync_topology, settings.publish_timeout)


def _selector(letter_id, replay_all, reason):
    if sum(bool(x) for x in (letter_id, replay_all, reason)) != 1:
        raise click.UsageError("give one of: an ID, --all, --reason CODE")
    if replay_all:
        return lambda letter: True
    if reason:
        return lambda letter: letter.code == reason or letter.code.endswith(f":{reason}")
    return lambda letter: letter.id == letter_id


@dead.command("list")
@click.option("--limit", default=100, show_default=True)
@click.option("--reason", default=None, help="Only this reason code.")
def dead_list(limit, reason):
    """List dead letters (they stay in the queue)."""
    letters = _dead_letters().browse(limit=limit)
    shown = [x for x in letters if not reason or x.code == reason]
    for letter in shown:
        s = letter.summary()
        click.echo(
            f"{s['id']}  order={s['order']}  reason={s['reason']}  attempts={s['attempts']}  "
            f"last_failed_at={s['last_failed_at']}  source={s['source']}"
        )
    click.echo(
        f"{len(shown)} dead letter(s)" + (" (limit reached)" if len(letters) >= limit else "")
    )


@dead.command("show")
@click.argument("letter_id")
def dead_show(letter_id):
    """Show one dead letter in full: the order event and the reason."""
    import json

    found = [x for x in _dead_letters().browse() if x.id == letter_id]
    if not found:
        raise click.ClickException(f"no dead letter {letter_id}")
    click.echo(json.dumps(found[0].describe(), indent=2, ensure_ascii=False, default=str))


@dead.command("replay")
@click.argument("letter_id", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Every dead letter.")
@click.option("--reason", default=None, help="Every dead letter with this reason code.")
def dead_replay(letter_id, replay_all, reason):
    """Put dead letters back on the work queue (each removed once the broker confirmed)."""
    replayed = _dead_letters().replay(_selector(letter_id, replay_all, reason))
    for letter in replayed:
        click.echo(f"replayed {letter.id} (order {letter.order})")
    click.echo(f"{len(replayed)} dead letter(s) replayed")
    if letter_id and not replayed:
        raise click.ClickException(f"no dead letter {letter_id} was replayed")


@dead.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dead_purge(yes):
    """Delete every dead letter."""
    if not yes:
        click.confirm("Delete every dead letter for good?", abort=True)
    click.echo(f"{_dead_letters().purge()} dead letter(s) deleted")


@main.command()
def check():
    """Check settings, Salesforce, Magento and RabbitMQ before going live; exit 1 on failure.

    Every finding in plain words, the fix under each failure, no secrets.
    """
    from magsync.check import main as run_check

    run_check()


@main.group()
def sandbox():
    """Run the local stand-ins for Salesforce and Magento."""


def _register_sandboxes():
    from magsync.sandbox.magento.cli import command as magento_command
    from magsync.sandbox.salesforce.cli import command as salesforce_command

    sandbox.add_command(salesforce_command, "salesforce")
    sandbox.add_command(magento_command, "magento")


_register_sandboxes()


def _register_ledger():
    from magsync.ledger.cli import db, trace

    main.add_command(db, "db")
    main.add_command(trace, "trace")


_register_ledger()
