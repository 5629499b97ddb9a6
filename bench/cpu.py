"""CPU seconds spent by the benchmark's own processes, to say what bounds a figure.

On a shared 2-core machine the rates depend on everyone else's load; the CPU
each order costs our processes (web, worker, beat and their PostgreSQL
backends) does not, and 2 cores divided by it is the ceiling.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()  # the name may contain spaces and parentheses
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and all its live descendants."""
    children: dict[int, list[int]] = defaultdict(list)
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children[stat[0]].append(int(entry.name))
            used[int(entry.name)] = stat[1]
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += used.get(pid, 0.0)
        todo.extend(children.get(pid, ()))
    return total


def _backend_pids() -> list[int]:
    """PIDs of the PostgreSQL backends connected to Django's database, but this thread's."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        return [pid for (pid,) in cursor.fetchall()]


class CpuMeter:
    """CPU seconds used between `start()` and `stop()` by process trees and the database.

    Backends come and go (CONN_MAX_AGE), taking their CPU with them, so a
    thread samples each backend every half second and keeps its last figure.
    """

    def __init__(self, **roots: int) -> None:
        self.roots = roots
        self.used: dict[str, float] = {}
        self._backends: dict[int, list[float]] = {}  # pid -> [first seen, last seen]
        self._stopping = threading.Event()

    def _sample_backends(self, *, new_from_zero: bool) -> None:
        for pid in _backend_pids():
            if (stat := _stat(pid)) is None:
                continue
            seen = self._backends.setdefault(pid, [0.0 if new_from_zero else stat[1], stat[1]])
            seen[1] = stat[1]

    def _watch(self) -> None:
        from django.db import connection

        try:
            while not self._stopping.wait(0.5):
                self._sample_backends(new_from_zero=True)
        finally:
            connection.close()

    def start(self) -> CpuMeter:
        self._trees = {name: tree_cpu(pid) for name, pid in self.roots.items()}
        self._sample_backends(new_from_zero=False)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stopping.set()
        self._thread.join()
        self._sample_backends(new_from_zero=True)
        self.used = {name: tree_cpu(pid) - self._trees[name] for name, pid in self.roots.items()}
        self.used["postgres"] = sum(last - first for first, last in self._backends.values())
        return self.used
