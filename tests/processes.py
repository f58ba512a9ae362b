"""Real magsync processes for end-to-end tests: gunicorn web servers and Celery workers.

Each process runs from the project's own entry points with a clean environment built from the
settings the test gives it, logs to a file the test can read, and is stopped (TERM, then KILL)
when the test is done.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# The environment a process starts from: enough to run, nothing of the developer's settings.
BASE_ENV = {
    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
    "HOME": os.environ.get("HOME", "/root"),
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent():
    """In the child: receive SIGTERM when the test process (the spawning thread) goes away, so
    an interrupted test run leaves no worker behind."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class Process:
    """A child process with its log file."""

    def __init__(self, name, argv, env, log_path):
        self.name = name
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            env={**BASE_ENV, **{k: str(v) for k, v in env.items()}},
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )

    def log(self):
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, text, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.log()}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not log {text!r} within {timeout}s:\n{self.log()}")

    def alive(self):
        return self.popen.poll() is None

    def kill(self, sig=signal.SIGKILL):
        """Send ``sig`` to the whole process group (a worker's pool children too)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def terminate(self):
        """SIGTERM to the main process only, as an operator stops it: a worker finishes the
        tasks under way, then its pool processes leave their loop and exit on their own, sending
        what they still hold (Sentry events) on the way out."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, signal.SIGTERM)

    def stop(self, timeout=15.0):
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.popen.wait(5)
        else:
            self.kill(signal.SIGKILL)  # stray children of a process that already exited
        self._log.close()


def shut_down(*processes, timeout=60.0):
    """Stop ``processes`` gracefully (see ``Process.terminate``), side by side; returns their exit
    codes, None for one that had to be killed after ``timeout`` seconds."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + timeout
    codes = []
    for process in processes:
        try:
            codes.append(process.popen.wait(max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append(None)
        process.stop()
    return codes


def start_web(env, log_dir, port=None, threads=4, workers=1, app="magsync.web:create_app()"):
    """gunicorn with the project's config; returns ``(process, base_url)`` once it answers."""
    port = port or free_port()
    process = Process(
        "web",
        [str(BIN / "gunicorn"), "-c", "config/gunicorn.py", app],
        {
            **env,
            "PORT": port,
            "HOST": "127.0.0.1",
            "WEB_CONCURRENCY": workers,
            "GUNICORN_THREADS": threads,
        },
        Path(log_dir) / f"web-{port}.log",
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"web exited:\n{process.log()}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return process, url
        except requests.RequestException:
            time.sleep(0.1)
    process.stop()
    raise TimeoutError(f"web did not answer:\n{process.log()}")


def start_worker(env, log_dir, name="w1", concurrency=2, extra=()):
    """``magsync worker`` (Celery, prefork); returns once it is ready to consume.

    Unless ``env`` names one, the worker's ledger is a SQLite file in ``log_dir``, shared by the
    workers of that folder and by no one else (a ledger outlives the sandbox org it describes).
    """
    env = {"DATABASE_URL": f"sqlite:///{Path(log_dir) / 'ledger.db'}", **env}
    process = Process(
        f"worker-{name}",
        [
            str(BIN / "magsync"),
            "worker",
            "--hostname",
            # Unique on the broker: a node name still held by a worker of another run would
            # make this one fail to start (its control queue is exclusive).
            f"{name}-{uuid.uuid4().hex[:6]}@%h",
            "--concurrency",
            str(concurrency),
            *extra,
        ],
        env,
        Path(log_dir) / f"worker-{name}.log",
    )
    process.wait_for_log(" ready.", timeout=60)
    return process
