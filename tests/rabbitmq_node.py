"""A private RabbitMQ node for tests that stop and start the broker (the chaos run).

``RabbitMQNode(folder).start()`` runs ``rabbitmq-server`` as the current user with everything of
its own: node name ``magsync-chaos-<random>@localhost``, free AMQP and distribution ports on
127.0.0.1, data, logs, configuration, plugins (none) and Erlang cookie under ``folder``. The
machine's RabbitMQ (port 5672) is never addressed: every ``rabbitmqctl`` call names this node,
and runs with this node's own cookie, which no other node accepts. ``restart()`` stops and starts
the node on its data; ``close()`` stops it and removes its data (the logs stay).
"""

import contextlib
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import time
from pathlib import Path

# Debian and Ubuntu put on PATH a wrapper that re-runs the scripts as the ``rabbitmq`` user with
# the machine's home and cookie; the scripts themselves sit beside the wrapper.
_WRAPPER = "rabbitmq-script-wrapper"


def find_scripts():
    """The folder holding the ``rabbitmq-server`` and ``rabbitmqctl`` scripts, or None."""
    found = shutil.which("rabbitmq-server")
    if not found:
        return None
    script = Path(os.path.realpath(found))
    if script.name == _WRAPPER:
        script = Path(os.path.realpath(script.parent / "rabbitmq-server"))
    folder = script.parent
    if (folder / "rabbitmq-server").is_file() and (folder / "rabbitmqctl").is_file():
        return folder
    return None


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RabbitMQNode:
    """One private ``rabbitmq-server`` under ``folder`` (see the module's docstring)."""

    def __init__(self, folder, log_folder=None, scripts=None):
        self.scripts = scripts or find_scripts()
        if self.scripts is None:
            raise RuntimeError("rabbitmq-server is not installed (not on PATH)")
        self.folder = Path(folder)
        self.log_folder = Path(log_folder or self.folder / "log")
        self.node = f"magsync-chaos-{secrets.token_hex(4)}@localhost"
        self.port = _free_port()
        self.dist_port = _free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.popen = None
        self._output = None
        self._prepare()

    def _prepare(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log_folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n", encoding="utf-8"
        )
        (self.folder / "enabled_plugins").write_text("[].\n", encoding="utf-8")
        (self.folder / "rabbitmq-env.conf").write_text("", encoding="utf-8")
        # A cookie of its own, written before anything starts (the server and the first
        # rabbitmqctl would otherwise race to create it).
        cookie = self.folder / ".erlang.cookie"
        cookie.write_text(
            "".join(secrets.choice(string.ascii_uppercase) for _ in range(20)), encoding="ascii"
        )
        cookie.chmod(0o400)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.folder),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.folder / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.folder / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_folder),
            "RABBITMQ_PID_FILE": str(self.folder / "rabbitmq.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def ctl(self, *args, timeout=120):
        """``rabbitmqctl -n <this node> ...``: no other node can be named."""
        return subprocess.run(
            [str(self.scripts / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )

    def start(self, timeout=180):
        """Start the node; returns once it accepts AMQP connections."""
        self._output = open(self.log_folder / "server.out", "ab")  # noqa: SIM115 - closed in stop
        self.popen = subprocess.Popen(
            [str(self.scripts / "rabbitmq-server")],
            cwd=self.folder,
            env=self.env,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"rabbitmq-server {self.node} exited ({self.popen.returncode}); "
                    f"see {self.log_folder}"
                )
            # ``wait`` returns once the node wrote its pid file and its application started.
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                self.ctl("wait", self.env["RABBITMQ_PID_FILE"], "--timeout", "10", timeout=30)
                if self._accepts_connections():
                    return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"rabbitmq-server {self.node} did not start; see {self.log_folder}")

    def _accepts_connections(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                return True
        except OSError:
            return False

    def stop(self, timeout=60):
        """Stop the node (``rabbitmqctl stop``, then SIGTERM and SIGKILL if it lingers)."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                self.ctl("stop", self.env["RABBITMQ_PID_FILE"], timeout=timeout)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                self.popen.wait(15)
                break
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, sig)
        self.popen.wait(15)
        self.popen = None
        self._output.close()

    def restart(self, down_for=3.0):
        """Stop the node, leave it down ``down_for`` seconds, start it again on its data."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def close(self):
        """Stop the node and remove its data (configuration, cookie, queues); keep the logs."""
        try:
            self.stop()
        finally:
            if self.log_folder.is_relative_to(self.folder):
                for entry in self.folder.iterdir():
                    if entry != self.log_folder:
                        _remove(entry)
            else:
                shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.close()


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
