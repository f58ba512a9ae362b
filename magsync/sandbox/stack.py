"""``magsync stack``: the whole of magsync on one machine, as ``scripts/run`` starts it.

What runs depends on what is configured (the environment, then ``.env``):

- no ``SALESFORCE_CLIENT_ID``: the sandbox Salesforce org, whose settings the stack takes, and
  a fresh ledger beside it (``<var>/sandbox/ledger.db``) unless ``DATABASE_URL`` is set;
- no ``MAGENTO_BASE_URL``: the sandbox Magento store, sending signed webhooks to the web process;
  with ``--adobe``, the Adobe I/O Events envelope to ``/adobe/events`` instead, signed with the
  store's RSA keys (which the web fetches from the store), and no ``MAGENTO_WEBHOOK_SECRET``;
- RabbitMQ at ``CELERY_BROKER_URL`` (default local) when it answers, otherwise the embedded
  ``filesystem://`` transport, with a warning (no confirms, no dead letters: for trying only);
- always: the web process (gunicorn), a worker and Flower (basic auth; credentials generated
  when ``FLOWER_BASIC_AUTH`` is unset).

With the sandbox store, a few demo orders are placed and followed until they are visible in
Salesforce. Logs go to ``<var>/log/``. Ctrl-C stops everything.
"""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from magsync.messaging.broker import broker_reachable
from magsync.settings import Settings

DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def read_dotenv(path):
    """``KEY=value`` lines of a ``.env`` file (``#`` comments, optional quotes), as a dict."""
    values = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip().removeprefix("export ").strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


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

        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        self.spawn(
            "web",
            [gunicorn, "-c", "config/gunicorn.py", "magsync.web:create_app()"],
            {"PORT": str(self.ports["web"]), "HOST": "127.0.0.1", "WEB_CONCURRENCY": "1"},
        )
        # A node name of its own: two stacks on one broker must not share a worker name.
        node = f"stack{os.getpid()}@%h"
        self.spawn("worker", [*magsync, "worker", "--hostname", node])
        self.spawn("flower", [*magsync, "flower", f"--port={self.ports['flower']}"])
        self._wait_http(f"{web_url}/healthz", "web")
        self._wait_http(f"http://127.0.0.1:{self.ports['flower']}/", "flower", ok=(200, 401))
        self._wait_log("worker", " ready.")

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
            f"WARNING: RabbitMQ is not reachable at {_hide_password(url)}; using the embedded "
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

        with StoreControl(self.sandbox_store) as store:
            placed = []
            for n in range(orders):
                order = store.place_order()
                if n % 2 == 0:
                    store.invoice(order["entity_id"])
                    order = store.ship(order["entity_id"])
                placed.append(order)
        self.echo(
            f"placed {len(placed)} orders in the sandbox store: "
            + ", ".join(f"{o['increment_id']} ({o['state']})" for o in placed)
        )
        if not self.sandbox_org:
            self.echo("(they sync to your Salesforce org; look for them there)")
            return True
        settings = Settings.from_env(self.env)
        # An order counts as synced once its Opportunity shows the order's latest stage.
        expected = {o["increment_id"]: settings.sf_stage_map.get(o["state"]) for o in placed}
        field_name = settings.sf_external_id_field
        with OrgControl(self.sandbox_org, self.env["SALESFORCE_CA_BUNDLE"]) as org:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.check_alive()
                synced = {
                    r[field_name]: r
                    for r in org.records("Opportunity")
                    if r.get(field_name) in expected
                    and r.get("StageName") == expected[r[field_name]]
                }
                if len(synced) == len(expected):
                    for number, record in synced.items():
                        self.echo(
                            f"  {number}: Opportunity {record['Id']} {record['StageName']!r} "
                            f"{record['Amount']} {record['Name']!r}"
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
            f"broker:          {_hide_password(self.env['CELERY_BROKER_URL'])}",
            f"logs:            {self.var / 'log'}/",
        ]
        if self.sandbox_org:
            lines.append(
                f"sandbox org:     {self.sandbox_org}/_sandbox/records/Opportunity "
                f"(curl --cacert {self.env['SALESFORCE_CA_BUNDLE']} ...)"
            )
        if self.sandbox_store:
            lines.append(f"sandbox store:   {self.sandbox_store}/_sandbox/orders?summary=1")
        return lines


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


def _drain(child):
    with open(child.log_path, "ab") as log:
        for line in child.popen.stdout:
            log.write(line)
            log.flush()


def _signal_group(popen, sig):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, sig)


def _hide_password(url):
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


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
    env = {**read_dotenv(root / ".env"), **os.environ}
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
