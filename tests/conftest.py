"""Shared fixtures: real Celery worker processes against the test database and Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """A `celery worker` subprocess on the test database and broker."""

    def __init__(self, env: dict[str, str], concurrency: int, queues: str) -> None:
        self.log = ROOT / "var" / f"test-worker-{os.getpid()}-{time.monotonic_ns()}.log"
        self.log.parent.mkdir(exist_ok=True)
        cmd = [
            sys.executable, "-m", "celery", "-A", "shopflow", "worker",
            "-Q", queues, "--concurrency", str(concurrency), "--pool", "prefork",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"test-{time.monotonic_ns()}@%h",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log.read_text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready:\n{self.log.read_text()[-3000:]}")

    def pool_pids(self) -> list[int]:
        """PIDs of the prefork pool's child processes."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


@pytest.fixture
def worker_env() -> dict[str, str]:
    """Environment that points a subprocess at this test run's database and broker."""
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
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def start_worker(
    transactional_db: None, worker_env: dict[str, str], redis_client: redis.Redis
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real Celery workers; each is stopped when the test ends."""
    redis_client.flushdb()
    workers: list[WorkerProcess] = []

    def start(concurrency: int = 2, queues: str = "outbox,events,saga,notifications",
              **extra_env: str) -> WorkerProcess:  # fmt: skip
        worker = WorkerProcess({**worker_env, **extra_env}, concurrency, queues)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
    redis_client.flushdb()


def wait_until(predicate: Callable[[], bool], timeout: float = 30, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
