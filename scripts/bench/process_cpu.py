"""CPU time of the benchmark's processes, read from ``/proc`` (Linux; elsewhere nothing).

A burst's rate drifts with the machine's other load; the CPU each process spends per order
does much less, so it shows what a change does (and where a burst's time goes).
"""

import os
from pathlib import Path

PROC = Path("/proc")


def available():
    return (PROC / "self" / "stat").exists()


def process_tree(pid):
    """``pid`` and its descendants (gunicorn's workers, a Celery worker's pool)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            children = (PROC / str(current) / "task" / str(current) / "children").read_text()
        except OSError:
            continue
        todo.extend(int(child) for child in children.split())
    return found


def named(command):
    """The processes whose command name is ``command`` (RabbitMQ's ``beam.smp``)."""
    pids = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == command:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cpu_seconds(pid):
    """User and system CPU seconds process ``pid`` has spent; None once it is gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """CPU seconds each group of processes spends between ``start()`` and ``stop()``.

    ``groups`` maps a name to a callable giving the group's pids, asked at both ends: a process
    started in between counts whole, one that ended in between is missed.
    """

    def __init__(self, groups):
        self.groups = groups
        self._started = {}

    def start(self):
        self._started = {name: self._read(pids) for name, pids in self.groups.items()}

    def stop(self):
        """``{name: seconds}``; empty where ``/proc`` is not."""
        if not available():
            return {}
        spent = {}
        for name, pids in self.groups.items():
            before = self._started.get(name, {})
            now = self._read(pids)
            spent[name] = sum(seconds - before.get(pid, 0.0) for pid, seconds in now.items())
        return spent

    @staticmethod
    def _read(pids):
        if not available():
            return {}
        seconds = {pid: cpu_seconds(pid) for pid in pids()}
        return {pid: spent for pid, spent in seconds.items() if spent is not None}
