"""Shared fixtures: real Celery worker and beat processes against the test database and Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from django.conf import settings
from django.db import connection, connections

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
ALL_QUEUES = "outbox,events,saga,notifications"


class CeleryProcess:
    """A `celery` subprocess on the test database and broker, logging to var/."""

    kind = ""
    ready_marker = ""

    def __init__(self, env: dict[str, str], args: list[str]) -> None:
        stem = f"test-{self.kind}-{os.getpid()}-{time.monotonic_ns()}"
        self.log = ROOT / "var" / f"{stem}.log"
        self.log.parent.mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "celery", "-A", "shopflow", *args, "--loglevel", "INFO"]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 30) -> None:
        """Block until the process logs that it is ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_marker in self.log.read_text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args} exited early:\n{self.log_tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.proc.args} not ready:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text()[-chars:]

    def terminate(self) -> None:
        """Ask for a warm shutdown without waiting for it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """Warm shutdown: let running tasks finish, then wait for the exit."""
        self.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def children(self) -> list[int]:
        """PIDs of the process's direct children (a worker's prefork pool)."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]

    def kill(self) -> None:
        """SIGKILL the process and its children at once, for a test that is over.

        A warm shutdown takes seconds (billiard's pool threads poll at 0.5-1 s);
        the test's database and broker db are wiped right after anyway.
        """
        if self.proc.poll() is not None:
            return
        children = self.children()
        self.proc.kill()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()


class WorkerProcess(CeleryProcess):
    """A `celery worker` subprocess (prefork pool) on the test database and broker."""

    kind = "worker"
    ready_marker = "ready."

    def __init__(
        self, env: dict[str, str], concurrency: int, queues: str, *, wait: bool = True
    ) -> None:
        super().__init__(env, [
            "worker", "-Q", queues, "--concurrency", str(concurrency), "--pool", "prefork",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"test-{time.monotonic_ns()}@%h",
        ])  # fmt: skip
        if wait:
            self.wait_ready()

    def pool_pids(self) -> list[int]:
        """PIDs of the prefork pool's child processes."""
        return self.children()

    def tasks_succeeded(self, name: str) -> int:
        """How many `name` tasks this worker has logged as succeeded."""
        lines = self.log.read_text().splitlines()
        return sum(1 for line in lines if f"Task {name}[" in line and " succeeded in " in line)


class BeatProcess(CeleryProcess):
    """A `celery beat` subprocess: sends `drain_outbox` every OUTBOX_POLL_INTERVAL seconds.

    Retries (a delivery waiting out its backoff) and expired leases are only
    picked up by a drain that nobody woke, so tests of those need the beat.
    """

    kind = "beat"
    ready_marker = "beat: Starting..."

    def __init__(self, env: dict[str, str]) -> None:
        schedule = ROOT / "var" / f"test-beat-schedule-{os.getpid()}-{time.monotonic_ns()}"
        self.schedule = schedule
        super().__init__(env, ["beat", "--schedule", str(schedule), "--max-interval", "1"])

    def stop(self) -> None:
        super().stop()
        for path in self.schedule.parent.glob(f"{self.schedule.name}*"):
            path.unlink(missing_ok=True)


@pytest.fixture
def staff(admin_client: Any) -> Any:
    """pytest-django's client logged in as a superuser, for the admin's pages and actions.

    (tests/api overrides `staff` with a staff user for its API clients.)
    """
    return admin_client


@pytest.fixture
def no_wake_up(settings: Any) -> None:
    """Commits do not wake the relay: tests that drive deliveries themselves."""
    settings.OUTBOX_WAKE_ON_COMMIT = False


@pytest.fixture
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def redis_wipe(client: redis.Redis) -> None:
    """Lose everything Redis holds: FLUSHALL, or FLUSHDB when SHOPFLOW_TEST_REDIS_FLUSH=flushdb.

    Use flushdb on a shared machine, so others' Redis databases survive your run.
    """
    if os.environ.get("SHOPFLOW_TEST_REDIS_FLUSH", "flushall").lower() == "flushdb":
        client.flushdb()
    else:
        client.flushall()


@pytest.fixture
def worker_env() -> dict[str, str]:
    """Environment that points a subprocess at this test run's database and broker."""
    return worker_environment()


def worker_environment() -> dict[str, str]:
    """What `worker_env` gives, for fixtures of a wider scope (once the test database exists)."""
    db = connection.settings_dict
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    url = f"postgres://{db['USER'] or 'postgres'}@{host}/{db['NAME']}"
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=url,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        REDIS_URL=settings.REDIS_URL,
        OUTBOX_LEASE_SECONDS=str(settings.OUTBOX_LEASE_SECONDS),
        OUTBOX_BACKOFF_BASE=str(settings.OUTBOX_BACKOFF_BASE),
        OUTBOX_BACKOFF_MAX=str(settings.OUTBOX_BACKOFF_MAX),
        # The beat schedule is built from this in shopflow.settings, before
        # tests.settings overrides it, so it has to come through the environment.
        OUTBOX_POLL_INTERVAL=str(settings.OUTBOX_POLL_INTERVAL),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def celery_processes(
    transactional_db: None, redis_client: redis.Redis
) -> Iterator[list[CeleryProcess]]:
    """Celery subprocesses of one test, on an empty broker db; all killed at its end."""
    redis_client.flushdb()
    processes: list[CeleryProcess] = []
    yield processes
    for process in processes:
        process.kill()
    redis_client.flushdb()


@pytest.fixture
def start_workers(
    celery_processes: list[CeleryProcess], worker_env: dict[str, str]
) -> Callable[..., list[WorkerProcess]]:
    """Start `count` real Celery workers side by side (and a beat with `beat=True`).

    Keyword arguments beyond these go into the processes' environment, so a
    test can turn any setting read from it (`OUTBOX_CHUNK_SIZE="4"`).
    """

    def start(count: int, concurrency: int = 2, queues: str = ALL_QUEUES,
              beat: bool = False, **extra_env: str) -> list[WorkerProcess]:  # fmt: skip
        env = {**worker_env, **extra_env}
        workers = [WorkerProcess(env, concurrency, queues, wait=False) for _ in range(count)]
        celery_processes.extend(workers)
        if beat:
            celery_processes.append(BeatProcess(env))
        for process in celery_processes:  # they start in parallel; wait for them all
            process.wait_ready()
        return workers

    return start


@pytest.fixture
def start_worker(start_workers: Callable[..., list[WorkerProcess]]) -> Callable[..., WorkerProcess]:
    """Start one real Celery worker (and a beat with `beat=True`); killed when the test ends."""

    def start(concurrency: int = 2, queues: str = ALL_QUEUES, beat: bool = False,
              **extra_env: str) -> WorkerProcess:  # fmt: skip
        return start_workers(1, concurrency, queues, beat, **extra_env)[0]

    return start


def wait_until(predicate: Callable[[], bool], timeout: float = 30, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def run_concurrently(count: int, func: Callable[[], T], timeout: float = 60) -> list[T]:
    """Run `func` in `count` threads released together by a barrier; their results.

    Each thread has its own database connection (Django's are per thread) and
    closes it when done; an exception in any thread is raised here.
    """
    barrier = threading.Barrier(count)
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            barrier.wait(timeout=timeout)
            result = func()
            with lock:
                results.append(result)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if errors:
        raise errors[0]
    assert len(results) == count, "a thread did not finish in time"
    return results
