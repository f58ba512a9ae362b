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

    The Salesforce settings are checked first, so a misconfigured worker stops at once with a
    message naming the variable instead of failing on every order.
    """
    from magsync.sinks.salesforce.auth import grant_for

    settings = load_settings()
    try:
        grant_for(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
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


@main.group()
def sandbox():
    """Run the local stand-ins for Salesforce and Magento."""


def _register_sandboxes():
    from magsync.sandbox.magento.cli import command as magento_command
    from magsync.sandbox.salesforce.cli import command as salesforce_command

    sandbox.add_command(salesforce_command, "salesforce")
    sandbox.add_command(magento_command, "magento")


_register_sandboxes()
