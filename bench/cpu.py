"""CPU seconds spent by the benchmark's own processes, to say what bounds a figure.

On a shared 2-core machine the rates depend on everyone else's load; the CPU
each order costs our processes (web, worker, beat and their PostgreSQL
backends) does not, and 2 cores divided by it is the ceiling.
"""

from __future__ import annotations

import os
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


def database_cpu() -> float:
    """CPU seconds of the PostgreSQL backends now connected to Django's database (same host)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        pids = [pid for (pid,) in cursor.fetchall()]
    return sum(stat[1] for pid in pids if (stat := _stat(pid)) is not None)


class CpuMeter:
    """CPU seconds used between `start()` and `stop()` by process trees and the database."""

    def __init__(self, **roots: int) -> None:
        self.roots = roots
        self.used: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        sample = {name: tree_cpu(pid) for name, pid in self.roots.items()}
        sample["postgres"] = database_cpu()
        return sample

    def start(self) -> CpuMeter:
        self._start = self._sample()
        return self

    def stop(self) -> dict[str, float]:
        end = self._sample()
        # A backend that closed in between took its CPU with it: never below 0.
        self.used = {name: max(0.0, end[name] - self._start[name]) for name in end}
        return self.used
