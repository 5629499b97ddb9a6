"""Saga fixtures: one worker kept for a whole module, a beat-like driver, and an in-process saga.

Starting and stopping a Celery worker costs seconds on a busy machine, so a
module keeps one and restarts it only when a test asks for other settings.
Between tests the database is flushed while the worker idles: a test ends
only once its sagas are quiet (see `beat`), so nothing of it is left running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from inventory.models import Product
from outbox import relay
from outbox.models import Delivery
from sagas import tasks
from sagas.models import Saga
from tests.conftest import WorkerProcess, wait_until
from tests.sagas.scenarios import InProcessSaga, quiet

logger = logging.getLogger(__name__)


class ModuleWorker:
    """At most one worker, reused by a module's tests while they ask for the same settings."""

    def __init__(self) -> None:
        self.worker: WorkerProcess | None = None
        self.env: dict[str, str] = {}
        self.broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)

    def ensure(self, env: dict[str, str], concurrency: int) -> WorkerProcess:
        # PYTEST_CURRENT_TEST changes with every test and means nothing to a worker.
        env = {k: v for k, v in env.items() if k != "PYTEST_CURRENT_TEST"}
        wanted = {**env, "concurrency": str(concurrency)}
        if self.worker is None or self.env != wanted or self.worker.proc.poll() is not None:
            self.stop()
            self.broker.flushdb()
            self.worker, self.env = (
                WorkerProcess(env, concurrency, "outbox,events,saga,notifications"),
                wanted,
            )
        return self.worker

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
            self.broker.flushdb()


@pytest.fixture
def mug() -> Product:
    """The product every saga test orders: 10 mugs at 9.95."""
    return Product.objects.create(sku="MUG-1", name="Mug", price=Decimal("9.95"), on_hand=10)


@pytest.fixture(scope="module")
def module_worker() -> Iterator[ModuleWorker]:
    holder = ModuleWorker()
    yield holder
    holder.stop()


class Beat(threading.Thread):
    """What beat does in production, from a thread: drain the outbox, run the saga watchdog.

    Retries waiting out a backoff and steps whose lease expired are only picked
    up this way. With `duplicate`, every relay batch and every due saga is sent
    twice, and every active saga gets two extra advances per tick.
    """

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.duplicate = False
        self.paused = threading.Event()
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval):
                if not self.paused.is_set():
                    self.tick()
        finally:
            connection.close()

    def tick(self) -> None:
        try:
            if self.duplicate:
                self._tick_twice()
            else:
                relay.drain()
                tasks.saga_watchdog()
        except Exception:  # e.g. the database flushed under us at teardown
            logger.exception("beat tick failed")

    def _tick_twice(self) -> None:
        lease_id, rows = relay.deliveries_claim(settings.OUTBOX_BATCH_SIZE)
        if rows:
            relay.deliveries_publish(lease_id, rows)
            relay.deliveries_publish(lease_id, rows)
        tasks.saga_watchdog()
        for saga_id in Saga.objects.filter(status__in=Saga.ACTIVE).values_list("pk", flat=True):
            tasks.advance_saga.delay(str(saga_id))
            tasks.advance_saga.delay(str(saga_id))

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


def idle() -> bool:
    """Quiet, and no other handler's delivery waiting either."""
    return quiet() and not Delivery.objects.filter(status=Delivery.Status.PENDING).exists()


@pytest.fixture
def beat(transactional_db: None) -> Iterator[Beat]:
    """A running beat-like driver; at the end it lets the test's sagas finish, then stops."""
    driver = Beat()
    driver.start()
    yield driver
    driver.paused.clear()
    driver.duplicate = False
    # The flush after the test TRUNCATEs every table: a worker transaction still
    # running then can deadlock with it, and the next test starts on old rows.
    if not wait_until(idle, timeout=30, interval=0.1):
        logger.warning("sagas or deliveries still active at teardown")
    driver.stop()
    time.sleep(0.3)  # the last handler's worker finishes relaying and lets go of its rows


@pytest.fixture
def saga_worker(
    module_worker: ModuleWorker, worker_env: dict[str, str], beat: Beat
) -> Callable[..., WorkerProcess]:
    """Start (or reuse) the module's worker with these extra settings; beat runs meanwhile."""

    def start(concurrency: int = 3, **extra_env: str) -> WorkerProcess:
        return module_worker.ensure({**worker_env, **extra_env}, concurrency)

    return start


@pytest.fixture
def in_process(transactional_db: None, monkeypatch: Any, settings: Any) -> InProcessSaga:
    """The saga run synchronously in the test process, with leases and backoffs of milliseconds."""
    settings.SAGA_STEP_LEASE_SECONDS = 0.02
    settings.SAGA_BACKOFF_BASE = 0.0
    settings.SAGA_BACKOFF_MAX = 0.0
    settings.SAGA_WAKE_GRACE_SECONDS = 0.0
    settings.OUTBOX_BACKOFF_BASE = 0.0
    settings.OUTBOX_BACKOFF_MAX = 0.0
    return InProcessSaga(monkeypatch)
