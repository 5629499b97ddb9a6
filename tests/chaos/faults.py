"""The faults of the chaos test: SIGKILLed workers, a Redis flush, a PostgreSQL restart.

Faults are planned up front from a seed (stratified over the load's progress,
so they are random but spread out) and injected by one thread while the clients
place orders. On a shared machine the real PostgreSQL restart and FLUSHALL would hurt
other people's test runs; `SHOPFLOW_CHAOS_PG_RESTART=0` swaps the restart for
terminating this test database's connections, and `SHOPFLOW_TEST_REDIS_FLUSH=flushdb`
flushes only this run's Redis database.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from django.db import connection

from tests.conftest import WorkerProcess, redis_wipe

KILL_CHILD, KILL_WORKER = "kill pool child", "kill whole worker"
REDIS_FLUSH, PG_RESTART = "redis flush", "postgres restart"
CLUSTERS = Path("/etc/postgresql")
# Seconds between two faults at least, even when waiting for a restart delayed the first.
MIN_GAP = 2.0


def pg_restart_is_real() -> bool:
    """Whether the test restarts PostgreSQL itself (the default) or only cuts its connections.

    A restart needs the local cluster `make test` starts (pg_ctlcluster); a server
    it cannot control (a container, another host) gets the cut instead.
    """
    wanted = os.environ.get("SHOPFLOW_CHAOS_PG_RESTART", "1") != "0"
    return wanted and shutil.which("pg_ctlcluster") is not None and _cluster_version() is not None


def _cluster_version() -> str | None:
    """The local PostgreSQL version, as `make test` picks it (the first in /etc/postgresql)."""
    versions = sorted(p.name for p in CLUSTERS.iterdir()) if CLUSTERS.is_dir() else []
    return versions[0] if versions else None


@dataclass(frozen=True)
class Fault:
    at: float  # when this share of the orders has been placed (0..1)
    kind: str


@dataclass(frozen=True)
class Injected:
    fault: Fault
    started: float  # monotonic
    ended: float  # monotonic: injected (a restarted database answers again)
    detail: str


def faults_plan(rng: random.Random, *, kills: int, window: tuple[float, float]) -> list[Fault]:
    """`kills` worker kills of both kinds, one Redis flush and one database restart, spread out.

    `window` is a span of the load's progress (0.05, 0.85: from 5 % of the
    orders placed to 85 %), cut into one slot per fault; each fault lands at a
    random point of its slot, so faults are random but never pile up.
    """
    whole = rng.randint(max(1, kills // 4), max(1, kills - kills // 4))
    kinds = [KILL_WORKER] * whole + [KILL_CHILD] * (kills - whole) + [REDIS_FLUSH, PG_RESTART]
    rng.shuffle(kinds)
    start, end = window
    slot = (end - start) / len(kinds)
    return [
        Fault(round(start + i * slot + rng.uniform(0.1, 0.9) * slot, 4), kind)
        for i, kind in enumerate(kinds)
    ]


class Chaos(threading.Thread):
    """Injects the planned faults as the load progresses; `injected` says what happened when."""

    def __init__(
        self,
        plan: list[Fault],
        *,
        progress: Callable[[], float],
        workers: list[WorkerProcess],
        restart_worker: Callable[[], WorkerProcess],
        broker: redis.Redis,
        rng: random.Random,
    ) -> None:
        super().__init__(name="chaos-faults", daemon=True)
        self.plan = plan
        self.progress = progress
        self.workers = workers
        self.restart_worker = restart_worker
        self.broker = broker
        self.rng = rng
        self.started = 0.0
        self.injected: list[Injected] = []
        self.killed: set[int] = set()  # pool children killed so far
        self.stopped = threading.Event()  # set when the test gave up: no more faults
        self.error: BaseException | None = None

    def start_at(self, started: float) -> None:
        self.started = started
        self.start()

    def run(self) -> None:
        try:
            earliest = self.started
            for fault in self.plan:
                while self.progress() < fault.at:
                    if self.stopped.wait(0.1):
                        return
                self.workers_ready()  # one worker down at a time, not a total outage
                time.sleep(max(0.0, earliest - time.monotonic()))
                began = time.monotonic()
                earliest = began + MIN_GAP
                detail = self._inject(fault.kind)
                self.injected.append(Injected(fault, began, time.monotonic(), detail))
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()

    @property
    def last_fault(self) -> float:
        """When the last fault was injected (monotonic)."""
        return max(i.started for i in self.injected)

    def _inject(self, kind: str) -> str:
        if kind == KILL_CHILD:
            return self._kill_child()
        if kind == KILL_WORKER:
            return self._kill_worker()
        if kind == REDIS_FLUSH:
            redis_wipe(self.broker)
            return os.environ.get("SHOPFLOW_TEST_REDIS_FLUSH", "flushall").lower()
        return _pg_restart() if pg_restart_is_real() else _pg_connections_cut()

    def _kill_child(self) -> str:
        index = self.rng.randrange(len(self.workers))
        # A child killed before shows until its worker reaps it; its replacement may lag.
        deadline = time.monotonic() + 10
        while not (children := set(self.workers[index].pool_pids()) - self.killed):
            if time.monotonic() > deadline:
                return self._kill_worker(index)
            time.sleep(0.1)
        pid = self.rng.choice(sorted(children))
        self.killed.add(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return f"worker {index}: pool child {pid}"

    def _kill_worker(self, index: int | None = None) -> str:
        index = self.rng.randrange(len(self.workers)) if index is None else index
        killed = self.workers[index]
        killed.kill()  # the main process and its pool at once, as the OOM killer or a node loss
        self.workers[index] = self.restart_worker()  # not awaited: the load goes on meanwhile
        return (
            f"worker {index}: pid {killed.proc.pid} and its pool, restarting as "
            f"{self.workers[index].proc.pid}"
        )

    def workers_ready(self, timeout: float = 120) -> None:
        """Wait until every restarted worker is up."""
        for worker in self.workers:
            worker.wait_ready(timeout)


def _pg_restart() -> str:
    """`pg_ctlcluster <version> main restart`: every connection of every process breaks."""
    version = _cluster_version()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return f"pg_ctlcluster {version} main restart"


def _pg_connections_cut(seconds: float = 2.0) -> str:
    """For `seconds`, terminate every other connection to this test database as it comes.

    What a restart does to this run's processes, without touching anyone else's:
    open connections break, and new ones break too until the window ends.
    """
    deadline, count = time.monotonic() + seconds, 0
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            count += cursor.fetchone()[0]
            time.sleep(0.02)
    return f"terminated {count} connections of this test database in {seconds:g} s"
