"""``magsync sandbox magento``: run the sandbox store, or drive a running one.

Without a subcommand it serves: prints the settings as ``KEY=value`` lines on stdout and runs
until SIGTERM or SIGINT. The subcommands talk to a running store through its control API
(``--url``, default ``$MAGENTO_BASE_URL``) and print JSON.
"""

import json
import signal
import sys
import threading

import click

from magsync.sandbox.magento.control import ControlClient, ControlError
from magsync.sandbox.magento.oauth import Integration, new_secret, valid_secret
from magsync.sandbox.magento.orders import ACTIONS
from magsync.sandbox.magento.search import PAST_END
from magsync.sandbox.magento.store import SandboxStore
from magsync.sandbox.magento.webhooks import ENVELOPES


def _secret(ctx, param, value):
    if value is not None and not valid_secret(value):
        raise click.BadParameter("must be 32 lowercase letters and digits")
    return value


@click.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8081, show_default=True, help="Port to listen on (0: any free).")
@click.option("--webhook-url", default=None, help="Where webhooks go (none: no webhooks).")
@click.option("--webhook-secret", default=None, help="HMAC secret (generated when not given).")
@click.option("--envelope", type=click.Choice(sorted(ENVELOPES)), default="seed", show_default=True)
@click.option("--seed", default=1, show_default=True, help="Seed of the order generator.")
@click.option("--orders", default=0, show_default=True, help="Orders to place at start.")
@click.option("--senders", default=8, show_default=True, help="Webhook sender threads.")
@click.option("--duplicate", default=0.0, show_default=True, help="Chaos: P(send twice).")
@click.option("--drop", default=0.0, show_default=True, help="Chaos: P(never send).")
@click.option("--reorder-window", default=0.0, show_default=True, help="Chaos: max hold, s.")
@click.option("--burst-every", default=0.0, show_default=True, help="Chaos: release every s.")
@click.option("--retry-base", default=1.0, show_default=True, help="First retry delay, s.")
@click.option("--retry-max-delay", default=60.0, show_default=True, help="Longest delay, s.")
@click.option("--max-attempts", default=10, show_default=True, help="Attempts before giving up.")
@click.option("--give-up-after", default=86400.0, show_default=True, help="Give up after s.")
@click.option("--timeout", default=10.0, show_default=True, help="Per-attempt timeout, s.")
@click.option(
    "--time-scale",
    default=1.0,
    show_default=True,
    help="Multiplies Adobe's retry schedule (1, 2, 4, 8 min, then 15 min for 24 h).",
)
@click.option(
    "--adobe-client-id",
    default=None,
    help="I/O project the Adobe envelope is addressed to (random when not given).",
)
@click.option(
    "--rotate-key-after",
    default=0.0,
    show_default=True,
    help="Replace Adobe key 1 (same path) this many seconds after start (0: never).",
)
@click.option("--past-end", type=click.Choice(PAST_END), default="last_page", show_default=True,
              help="A search page past the last one: the last page again (Magento 2.3) or "
                   "empty (2.4).")  # fmt: skip
@click.option("--consumer-key", callback=_secret, help="Pin the integration's consumer key.")
@click.option("--consumer-secret", callback=_secret, help="Pin the consumer secret.")
@click.option("--access-token", callback=_secret, help="Pin the access token.")
@click.option("--access-token-secret", callback=_secret, help="Pin the access token secret.")
@click.pass_context
def command(ctx, **options):
    """Run the sandbox Magento store.

    It serves the REST API and a control API, and sends webhooks.
    """
    if ctx.invoked_subcommand is not None:
        return
    integration = Integration(
        consumer_key=options["consumer_key"] or new_secret(),
        consumer_secret=options["consumer_secret"] or new_secret(),
        access_token=options["access_token"] or new_secret(),
        access_token_secret=options["access_token_secret"] or new_secret(),
    )
    store = SandboxStore(
        host=options["host"],
        port=options["port"],
        webhook_url=options["webhook_url"],
        webhook_secret=options["webhook_secret"],
        envelope=options["envelope"],
        seed=options["seed"],
        integration=integration,
        adobe_client_id=options["adobe_client_id"],
        senders=options["senders"],
        retry={
            "base": options["retry_base"],
            "max_delay": options["retry_max_delay"],
            "max_attempts": options["max_attempts"],
            "give_up_after": options["give_up_after"],
            "timeout": options["timeout"],
            "time_scale": options["time_scale"],
        },
        chaos={
            "duplicate": options["duplicate"],
            "drop": options["drop"],
            "reorder_window": options["reorder_window"],
            "burst_every": options["burst_every"],
        },
        past_end=options["past_end"],
    )
    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        store.start()
        if options["orders"]:
            store.create_orders(options["orders"])
        shown = store.settings()
        if options["envelope"] == "adobe":
            shown.update(store.adobe_settings())
        for key, value in shown.items():
            click.echo(f"{key}={value}")
        sys.stdout.flush()
        _rotate_later(store, options["rotate_key_after"], stopping)
        while not stopping.wait(0.5):
            pass
    finally:
        store.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _rotate_later(store, seconds, stopping):
    """Replace Adobe key 1 after ``seconds`` (the key-rotation knob), unless stopped first."""
    if seconds <= 0:
        return

    def rotate():
        if not stopping.wait(seconds):
            store.rotate_adobe_key(1)
            click.echo("adobe key 1 rotated", err=True)

    threading.Thread(target=rotate, name="adobe-key-rotation", daemon=True).start()


def _client_command(function):
    """A subcommand that talks to a running store and prints what it answers as JSON."""

    @click.option("--url", envvar="MAGENTO_BASE_URL", default="http://127.0.0.1:8081",
                  show_default=True, help="Base URL of the running store.")  # fmt: skip
    def wrapper(url, **kwargs):
        with ControlClient(url) as client:
            try:
                answer = function(client, **kwargs)
            except ControlError as error:
                raise click.ClickException(str(error)) from None
        click.echo(json.dumps(answer, ensure_ascii=False, indent=2))

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper


@command.command("create")
@click.argument("count", type=int)
@click.option("--kind", type=click.Choice(["registered", "guest", "configurable"]))
@click.option("--step", "steps", multiple=True, type=click.Choice(sorted(ACTIONS)))
@click.option("--at", default=None, help="Place them all at this second (YYYY-MM-DD HH:MM:SS).")
@_client_command
def create(client, count, kind, steps, at):
    """Place COUNT orders (each taken through the --step actions)."""
    return client.create_orders(count, kind=kind, steps=list(steps), at=at)


@command.command("act")
@click.argument("entity_id", type=int)
@click.argument("action", type=click.Choice(sorted(ACTIONS)))
@_client_command
def act(client, entity_id, action):
    """Run a lifecycle ACTION on the order ENTITY_ID."""
    return client.act(entity_id, action)


@command.command("scenario")
@click.option("--orders", default=1000, show_default=True)
@click.option("--step", "steps", multiple=True, type=click.Choice(sorted(ACTIONS)))
@click.option("--duration", type=float, default=None, help="Spread the saves over s seconds.")
@click.option("--lag", default=0, show_default=True, help="Orders between an order's steps.")
@click.option("--burst", default=1, show_default=True, help="Saves issued together.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for delivery.")
@_client_command
def scenario(client, orders, steps, duration, lag, burst, wait):
    """Run a scenario (default: each order placed, invoiced and shipped)."""
    return client.run_scenario(
        orders=orders,
        steps=list(steps) or ["invoice", "ship"],
        duration=duration,
        lag=lag,
        burst=burst,
        wait=wait,
    )


@command.command("truth")
@click.option("--full", is_flag=True, help="Whole orders instead of summaries.")
@_client_command
def truth(client, full):
    """Print the current truth of every order."""
    return client.truth(summary=not full)


@command.command("deliveries")
@click.option("--since", default=0, show_default=True)
@_client_command
def deliveries(client, since):
    """Print the delivery log."""
    return client.deliveries(since)


@command.command("status")
@_client_command
def status(client):
    """Print order count and delivery counters."""
    return client.status()


@command.command("rotate-key")
@click.argument("number", type=click.IntRange(1, 2), default=1)
@_client_command
def rotate_key(client, number):
    """Replace Adobe signing key NUMBER (1 or 2) with a new key at the same path."""
    return client.rotate_adobe_key(number)


@command.command("chaos")
@click.option("--duplicate", default=0.0, show_default=True)
@click.option("--drop", default=0.0, show_default=True)
@click.option("--reorder-window", default=0.0, show_default=True)
@click.option("--burst-every", default=0.0, show_default=True)
@_client_command
def chaos(client, duplicate, drop, reorder_window, burst_every):
    """Replace the chaos settings of a running store."""
    return client.set_chaos(
        duplicate=duplicate, drop=drop, reorder_window=reorder_window, burst_every=burst_every
    )


@command.command("webhook")
@click.option("--to", "target", default=None, help="Send webhooks to this URL from now on.")
@click.option("--off", is_flag=True, help="Send none (a store without any webhook module).")
@_client_command
def webhook(client, target, off):
    """Print (or change) where a running store sends its webhooks."""
    if off and target:
        raise click.UsageError("give --to or --off, not both")
    if off or target:
        return client.set_webhook(url=target or "")
    return client.webhook()


@command.command("paging")
@click.option("--past-end", type=click.Choice(PAST_END), default=None,
              help="Set it: the last page again (Magento 2.3) or empty (2.4).")  # fmt: skip
@_client_command
def paging(client, past_end):
    """Print (or set) what a search page past the last one holds."""
    return client.set_paging(past_end) if past_end else client.paging()


@command.command("requests")
@click.option("--since", default=0, show_default=True)
@_client_command
def request_log(client, since):
    """Print the REST request log (method, path, query, status)."""
    return client.requests(since)
