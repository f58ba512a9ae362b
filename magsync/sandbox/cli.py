"""``magsync sandbox salesforce|magento`` and ``magsync stack``: the stand-ins and the demo."""

import sys

import click

from magsync.cli.base import LazyGroup


@click.group(
    cls=LazyGroup,
    lazy_commands={
        "salesforce": "magsync.sandbox.salesforce.cli:command",
        "magento": "magsync.sandbox.magento.cli:command",
    },
)
def sandbox():
    """Run the local stand-ins for Salesforce and Magento.

    They need magsync's sandbox extra.
    """


@click.command()
@click.option(
    "--var",
    "var",
    default="var",
    show_default=True,
    help="State, logs and the demo's settings file (relative to the current directory).",
)
@click.option("--web-port", envvar="PORT", default=8000, show_default=True)
@click.option("--flower-port", envvar="FLOWER_PORT", default=5555, show_default=True)
@click.option("--org-port", envvar="SANDBOX_ORG_PORT", default=8443, show_default=True)
@click.option("--store-port", envvar="SANDBOX_STORE_PORT", default=8081, show_default=True)
@click.option("--demo-orders", default=3, show_default=True, help="Orders the sandbox places.")
@click.option("--exit-when-synced", is_flag=True, help="Stop once the demo orders synced.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds the demo may take.")
@click.option("--adobe", is_flag=True, help="Adobe I/O Events intake (/adobe/events), no HMAC.")
def stack(
    var, web_port, flower_port, org_port, store_port, demo_orders, exit_when_synced, timeout, adobe
):
    """Run web, worker and Flower on this machine.

    The sandboxes stand in for Salesforce and Magento where they are not configured. Works from
    any directory: `.env` and the `--var` folder are looked for in the current one.
    """
    from pathlib import Path

    from magsync.sandbox import stack as devstack

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
        adobe=adobe,
    )
    sys.exit(code)
