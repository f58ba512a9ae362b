"""``magsync stack``: the whole of magsync on one machine, as ``scripts/run`` starts it.

What runs depends on what is configured (the environment, then ``.env``):

- no ``SALESFORCE_CLIENT_ID``: the sandbox Salesforce org, whose settings the stack takes, and
  a fresh ledger beside it (``<var>/sandbox/ledger.db``) unless ``DATABASE_URL`` is set;
- no ``MAGENTO_BASE_URL``: the sandbox Magento store, sending signed webhooks to the web process;
  with ``--adobe``, the Adobe I/O Events envelope to ``/adobe/events`` instead, signed with the
  store's RSA keys (which the web fetches from the store), and no ``MAGENTO_WEBHOOK_SECRET``;
- RabbitMQ at ``CELERY_BROKER_URL`` (default local) when it answers, otherwise the embedded
  ``filesystem://`` transport, with a warning (no confirms, no dead letters: for trying only);
- always: the web process (gunicorn, with the settings of ``magsync.web.gunicorn_config``), a
  worker, the clock (reconcile passes; it idles without the store's REST settings) and Flower
  (basic auth; credentials generated when ``FLOWER_BASIC_AUTH`` is unset).

Whenever a sandbox runs, the stack is a demo and keeps apart from any real deployment on the
machine: it runs in a broker namespace of its own (``magsync-demo-<random>``, whatever
``MAGSYNC_BROKER_NAMESPACE`` says, deleted when the stack stops), so it never consumes a real
deployment's queues, and it writes every setting its processes use to ``<var>/sandbox/
magsync.env`` (owner-only: it holds the sandboxes' secrets), where ``magsync --env-file`` finds
them; the banner shows the ``trace``, ``check`` and ``dead list`` commands that use it. The
sandbox org has multi-currency on, so its worker writes each order's currency
(``SALESFORCE_MULTI_CURRENCY=true``).

With the sandbox store, a few demo orders (in USD, EUR and GBP) are placed and followed until
they are visible in Salesforce. Logs go to ``<var>/log/``. Ctrl-C stops everything.
"""

import contextlib
import dataclasses
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from magsync.cli.env_file import EnvFileError, read_env_file, write_env_file
from magsync.messaging.broker import Topology, broker_reachable
from magsync.settings import Settings, mask_url

DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
# The currencies of the demo orders, one store view each: the sandbox org converts none of them.
DEMO_CURRENCIES = ("USD", "EUR", "GBP")
# Every variable magsync reads: what the settings file for ``magsync --env-file`` may hold.
SETTING_NAMES = tuple(f.metadata["env"] for f in dataclasses.fields(Settings))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    log_path: Path


@dataclass
class Stack:
    root: Path
    var: Path
    ports: dict
    echo: object = print
    env: dict = field(default_factory=dict)
    children: list = field(default_factory=list)
    sandbox_org: str | None = None
    sandbox_store: str | None = None
    flower_generated: bool = False
    own_namespace: str | None = None  # the demo's broker namespace, deleted at stop
    settings_file: Path | None = None
    demo_orders: list = field(default_factory=list)
    adobe: bool = False

    # -- processes ------------------------------------------------------------------------------

    def spawn(self, name, argv, env=None):
        log_path = self.var / "log" / f"{name}.log"
        handle = open(log_path, "ab")  # noqa: SIM115 - the child owns it; closed at exit
        popen = subprocess.Popen(
            argv,
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE if name.startswith("sandbox-") else handle,
            stderr=handle,
            start_new_session=True,
        )
        child = Child(name, popen, log_path)
        self.children.append(child)
        return child

    def read_settings(self, child, keys, timeout=60.0):
        """The ``KEY=value`` lines a sandbox prints at start."""
        found = {}
        deadline = time.monotonic() + timeout
        while set(keys) - set(found):
            if time.monotonic() > deadline or child.popen.poll() is not None:
                raise RuntimeError(f"{child.name} did not start; see {child.log_path}")
            line = child.popen.stdout.readline().decode("utf-8", "replace").strip()
            key, sep, value = line.partition("=")
            if sep:
                found[key] = value
        # Whatever the sandbox prints later goes to its log, so its stdout pipe never fills up.
        threading.Thread(target=_drain, args=(child,), daemon=True).start()
        return found

    def stop(self):
        for child in reversed(self.children):
            if child.popen.poll() is None:
                _signal_group(child.popen, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in reversed(self.children):
            try:
                child.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child.popen, signal.SIGKILL)
                child.popen.wait(5)
        if self.own_namespace and self.env["CELERY_BROKER_URL"].startswith("amqp"):
            self._delete_namespace()

    def _delete_namespace(self):
        """Remove the demo's queues and exchanges: their name is never used again."""
        from kombu import Connection

        topology = Topology(self.own_namespace)
        conn = Connection(self.env["CELERY_BROKER_URL"], connect_timeout=5)
        try:
            with conn:
                channel = conn.default_channel
                for queue in (*topology.work_queues, topology.dead_queue):
                    channel.queue_delete(queue.name)
                for exchange in (topology.exchange, topology.dead_exchange):
                    channel.exchange_delete(exchange.name)
                # Remote control (``control_exchange`` is the namespace).
                for name in (f"{topology.namespace}.pidbox", f"reply.{topology.namespace}.pidbox"):
                    channel.exchange_delete(name)
        except (OSError, *conn.connection_errors, *conn.channel_errors) as exc:
            self.echo(f"could not remove broker namespace {self.own_namespace}: {exc}")

    def check_alive(self):
        for child in self.children:
            if child.popen.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited with {child.popen.returncode}; see {child.log_path}"
                )

    # -- start-up -------------------------------------------------------------------------------

    def start(self):
        magsync = [sys.executable, "-m", "magsync"]
        web_url = f"http://127.0.0.1:{self.ports['web']}"
        if not self.adobe:
            self.env.setdefault("MAGENTO_WEBHOOK_SECRET", secrets.token_hex(24))

        if not self.env.get("SALESFORCE_CLIENT_ID"):
            org = self.spawn(
                "sandbox-salesforce",
                [
                    *magsync, "sandbox", "salesforce", "--port", str(self.ports["org"]),
                    "--state-dir", str(self.var / "sandbox" / "salesforce"),
                ],
            )  # fmt: skip
            self.env.update(self.read_settings(org, _ORG_KEYS))
            self.sandbox_org = self.env["SALESFORCE_LOGIN_URL"]
            # The sandbox org has multi-currency on (schema.json lists its currencies): without
            # this, EUR and GBP orders would land in the corporate currency, USD.
            self.env["SALESFORCE_MULTI_CURRENCY"] = "true"
            if not self.env.get("DATABASE_URL"):
                # The sandbox org starts empty each time, so its ledger must too: a ledger
                # that remembered orders as synced would never send them to the new org.
                ledger = self.var / "sandbox" / "ledger.db"
                for leftover in ledger.parent.glob("ledger.db*"):
                    leftover.unlink()
                self.env["DATABASE_URL"] = f"sqlite:///{ledger}"
        if not self.env.get("MAGENTO_BASE_URL"):
            self._start_store(magsync, web_url)
        elif self.adobe and not self.env.get("ADOBE_IO_CLIENT_ID"):
            raise RuntimeError("--adobe with your own store needs ADOBE_IO_CLIENT_ID")

        self._choose_broker()
        if not self.env.get("FLOWER_BASIC_AUTH"):
            self.env["FLOWER_BASIC_AUTH"] = f"admin:{secrets.token_urlsafe(12)}"
            self.flower_generated = True
        if self.sandbox_org or self.sandbox_store:
            # A demo never shares a real deployment's queues: it would consume its orders.
            self.own_namespace = f"magsync-demo-{secrets.token_hex(4)}"
            self.env["MAGSYNC_BROKER_NAMESPACE"] = self.own_namespace
            self.settings_file = self._write_settings_file()

        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        self.spawn(
            "web",
            [gunicorn, "-c", "python:magsync.web.gunicorn_config", "magsync.web:create_app()"],
            {"PORT": str(self.ports["web"]), "HOST": "127.0.0.1", "WEB_CONCURRENCY": "1"},
        )
        # A node name of its own: two stacks on one broker must not share a worker name.
        node = f"stack{os.getpid()}@%h"
        self.spawn("worker", [*magsync, "worker", "--hostname", node])
        self.spawn("clock", [*magsync, "clock"])
        self.spawn("flower", [*magsync, "flower", f"--port={self.ports['flower']}"])
        self._wait_http(f"{web_url}/healthz", "web")
        self._wait_http(f"http://127.0.0.1:{self.ports['flower']}/", "flower", ok=(200, 401))
        self._wait_log("worker", " ready.")

    def _write_settings_file(self):
        """Every setting the processes get, for ``magsync --env-file`` (owner-only)."""
        values = {name: self.env[name] for name in SETTING_NAMES if self.env.get(name)}
        # The processes run in the stack's folder; the file is for commands run from anywhere.
        database = values.get("DATABASE_URL") or "sqlite:///var/magsync.db"
        if database.startswith("sqlite:///") and not database.startswith("sqlite:////"):
            values["DATABASE_URL"] = f"sqlite:///{self.root / database.removeprefix('sqlite:///')}"
        header = (
            "Settings of the magsync demo that `magsync stack` runs (rewritten at each start).",
            "Use them with: magsync --env-file <this file> trace|check|dead ...",
        )
        return write_env_file(self.var / "sandbox" / "magsync.env", values, header)

    def _start_store(self, magsync, web_url):
        if self.adobe:
            self.env.setdefault("ADOBE_IO_CLIENT_ID", secrets.token_hex(16))
            intake = [
                "--envelope", "adobe", "--webhook-url", f"{web_url}/adobe/events",
                "--adobe-client-id", self.env["ADOBE_IO_CLIENT_ID"],
                # Adobe's retries (1, 2, 4, 8 min, ...) in seconds for the demo.
                "--time-scale", "0.05",
            ]  # fmt: skip
            keys = (*_STORE_KEYS, "ADOBE_IO_PUBLIC_KEY_BASE_URL")
        else:
            intake = [
                "--webhook-url", f"{web_url}/magento/webhook",
                "--webhook-secret", self.env["MAGENTO_WEBHOOK_SECRET"].split(",")[0],
                "--retry-base", "1", "--retry-max-delay", "10",
            ]  # fmt: skip
            keys = _STORE_KEYS
        store = self.spawn(
            "sandbox-magento",
            [*magsync, "sandbox", "magento", "--port", str(self.ports["store"]), *intake],
        )
        self.env.update(self.read_settings(store, keys))
        self.sandbox_store = self.env["MAGENTO_BASE_URL"]

    def _choose_broker(self):
        url = self.env.get("CELERY_BROKER_URL") or DEFAULT_BROKER
        if broker_reachable(url, timeout=3.0):
            self.env["CELERY_BROKER_URL"] = url
            return
        folder = self.var / "broker"
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.env["CELERY_BROKER_URL"] = "filesystem://"
        self.env["MAGSYNC_BROKER_FOLDER"] = str(folder)
        self.echo(
            f"WARNING: RabbitMQ is not reachable at {mask_url(url)}; using the embedded "
            f"filesystem transport in {folder}. It has no publisher confirms and no dead "
            "letters: for trying magsync only, never for real orders."
        )

    def _wait_http(self, url, name, ok=(200,), timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if requests.get(url, timeout=1).status_code in ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not answer at {url}")

    def _wait_log(self, name, text, timeout=90.0):
        child = next(c for c in self.children if c.name == name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if text in child.log_path.read_text(encoding="utf-8", errors="replace"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become ready; see {child.log_path}")

    # -- the demo -------------------------------------------------------------------------------

    def demo(self, orders, timeout):
        """Place ``orders`` orders in the sandbox store; True once all are in Salesforce."""
        from magsync.sandbox.magento import ControlClient as StoreControl
        from magsync.sandbox.salesforce import ControlClient as OrgControl

        stores = _demo_store_ids()
        with StoreControl(self.sandbox_store) as store:
            placed = []
            for n in range(orders):
                order = store.place_order(store_id=stores[n % len(stores)])
                if n % 2 == 0:
                    store.invoice(order["entity_id"])
                    order = store.ship(order["entity_id"])
                placed.append(order)
        self.demo_orders = placed
        self.echo(
            f"placed {len(placed)} orders in the sandbox store: "
            + ", ".join(
                f"{o['increment_id']} ({o['state']}, {o['order_currency_code']} {o['grand_total']})"
                for o in placed
            )
        )
        if not self.sandbox_org:
            self.echo("(they sync to your Salesforce org; look for them there)")
            return True
        settings = Settings.from_env(self.env)
        # An order counts as synced once its Opportunity shows the order's latest stage, in the
        # order's currency.
        expected = {
            o["increment_id"]: (settings.sf_stage_map.get(o["state"]), o["order_currency_code"])
            for o in placed
        }
        field_name = settings.sf_external_id_field
        with OrgControl(self.sandbox_org, self.env["SALESFORCE_CA_BUNDLE"]) as org:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.check_alive()
                synced = {
                    r[field_name]: r
                    for r in org.records("Opportunity")
                    if r.get(field_name) in expected
                    and (r.get("StageName"), r.get("CurrencyIsoCode")) == expected[r[field_name]]
                }
                if len(synced) == len(expected):
                    for number, record in synced.items():
                        self.echo(
                            f"  {number}: Opportunity {record['Id']} {record['StageName']!r} "
                            f"{record['CurrencyIsoCode']} {record['Amount']} {record['Name']!r}"
                        )
                    self.echo(f"orders visible in the sandbox org: {len(synced)}/{len(expected)}")
                    return True
                time.sleep(0.5)
        self.echo(f"timed out: not every order reached the sandbox org in {timeout:.0f}s")
        return False

    def describe(self):
        user, _, password = self.env["FLOWER_BASIC_AUTH"].partition(":")
        login = f"{user} / {password}" if self.flower_generated else "FLOWER_BASIC_AUTH"
        route = "/adobe/events" if self.adobe else "/magento/webhook"
        lines = [
            f"web (webhooks):  http://127.0.0.1:{self.ports['web']}{route}",
            f"Flower:          http://127.0.0.1:{self.ports['flower']}/  (login: {login})",
            f"broker:          {mask_url(self.env['CELERY_BROKER_URL'])}",
            f"logs:            {self.var / 'log'}/",
        ]
        if self.own_namespace:
            lines[2] += f"  (namespace {self.own_namespace}, the demo's own)"
        if self.sandbox_org:
            lines.append(
                f"sandbox org:     {self.sandbox_org}/_sandbox/records/Opportunity "
                f"(curl --cacert {self.env['SALESFORCE_CA_BUNDLE']} ...)"
            )
        if self.sandbox_store:
            lines.append(f"sandbox store:   {self.sandbox_store}/_sandbox/orders?summary=1")
        if self.settings_file:
            lines.append(f"settings:        {self.settings_file}  (for magsync --env-file)")
        return lines

    def commands(self):
        """The CLI commands that work against this demo from any directory, as shell lines."""
        if not self.settings_file:
            return []
        magsync = Path(sys.executable).parent / "magsync"
        base = [str(magsync)] if magsync.is_file() else [sys.executable, "-m", "magsync"]
        base += ["--env-file", str(self.settings_file)]
        order = self.demo_orders[0]["increment_id"] if self.demo_orders else "<order number>"
        wanted = [["trace", order]]
        if self.env["CELERY_BROKER_URL"].startswith("amqp"):
            # The embedded transport has no dead letters, and `check` wants RabbitMQ.
            wanted += [["check"], ["dead", "list"]]
        return [shlex.join(base + args) for args in wanted]


_ORG_KEYS = (
    "SALESFORCE_LOGIN_URL",
    "SALESFORCE_CLIENT_ID",
    "SALESFORCE_USERNAME",
    "SALESFORCE_PRIVATE_KEY_PATH",
    "SALESFORCE_CA_BUNDLE",
)
_STORE_KEYS = (
    "MAGENTO_BASE_URL",
    "MAGENTO_CONSUMER_KEY",
    "MAGENTO_CONSUMER_SECRET",
    "MAGENTO_ACCESS_TOKEN",
    "MAGENTO_ACCESS_TOKEN_SECRET",
)


def _demo_store_ids():
    """One store view of the sandbox store per demo currency (its orders are in that one)."""
    from magsync.sandbox.magento.generator import load

    stores = load("stores.json")["stores"]
    return [
        next(s["store_id"] for s in stores if s["order_currency"] == currency)
        for currency in DEMO_CURRENCIES
    ]


def _drain(child):
    with open(child.log_path, "ab") as log:
        for line in child.popen.stdout:
            log.write(line)
            log.flush()


def _signal_group(popen, sig):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, sig)


def run(
    root,
    var,
    ports,
    demo_orders=3,
    exit_when_synced=False,
    timeout=120.0,
    echo=print,
    adobe=False,
):
    """Start the stack, run the demo, then serve until interrupted; returns an exit code.

    ``adobe`` runs the Adobe I/O Events intake instead of the seed webhook's."""
    try:
        env = {**read_env_file(root / ".env"), **os.environ}
    except EnvFileError as exc:
        echo(f"error: {exc}")
        return 1
    Settings.from_env(env)  # malformed settings stop here, before anything starts
    for sub in ("log", "sandbox"):
        (var / sub).mkdir(parents=True, exist_ok=True)
    stack = Stack(root=root, var=var, ports=ports, echo=echo, env=env, adobe=adobe)
    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stack.start()
        echo("magsync is running:")
        for line in stack.describe():
            echo(f"  {line}")
        synced = True
        if stack.sandbox_store and demo_orders:
            synced = stack.demo(demo_orders, timeout)
        if exit_when_synced:
            return 0 if synced else 1
        commands = stack.commands()
        if commands:
            echo("Against this demo, from any directory (while it runs):")
            for command in commands:
                echo(f"  $ {command}")
        echo("Ctrl-C stops everything.")
        while not stopping:
            stack.check_alive()
            time.sleep(0.5)
        return 0
    except RuntimeError as exc:
        echo(f"error: {exc}")
        return 1
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
