"""The whole shop as real processes: gunicorn (the Procfile's web), two Celery workers and beat."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
import redis
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from inventory.services import product_create
from tests.chaos.clients import Customer
from tests.chaos.processes import WebProcess
from tests.conftest import ALL_QUEUES, CeleryProcess, WorkerProcess

CUSTOMERS = 8
SKUS = [f"CHAOS-{i}" for i in range(10)]
# Enough that no order of the run fails for stock: every outcome comes from its scenario.
STOCK = 1_000_000
# Processes per worker, as the Procfile's `worker` runs.
WORKER_CONCURRENCY = 2


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: the whole shop under injected faults (worker kills, Redis and "
        "PostgreSQL outages); minutes long, run by `make test`",
    )  # fmt: skip


@dataclass
class Shop:
    web: WebProcess
    workers: list[WorkerProcess]
    restart_worker: Callable[[], WorkerProcess]
    broker: redis.Redis
    customers: list[Customer]
    skus: list[str]


# Production's timings (shopflow/settings.py) rather than the suite's hair-trigger ones:
# a drain and a watchdog every 0.2 s, asking again after 1 s, flood the queues of a busy
# 2-core machine with ticks and repeats. Leases are a third of production's 30 s, so work
# a killed worker held comes back within seconds.
PROCESS_SETTINGS = {
    "OUTBOX_POLL_INTERVAL": "1",
    "OUTBOX_LEASE_SECONDS": "10",
    "OUTBOX_BACKOFF_BASE": "1",
    "OUTBOX_BACKOFF_MAX": "300",
    "SAGA_WATCHDOG_INTERVAL": "1",
    "SAGA_WAKE_GRACE_SECONDS": "5",
    # Shorter than the slow provider calls below, which must renew it (issue 11 §5).
    "SAGA_STEP_LEASE_SECONDS": "3",
    "PAYMENT_GATEWAY": "tests.chaos.providers.SometimesSlowGateway",
    "SHIPPING_CARRIER": "tests.chaos.providers.SometimesSlowCarrier",
    "SAGA_BACKOFF_BASE": "0.5",
    "SAGA_BACKOFF_MAX": "8",
    # Production does not record every SQL statement in memory, as DEBUG does; no TLS
    # proxy stands in front of the test's gunicorn to redirect to.
    "DEBUG": "false",
    "SECRET_KEY": "chaos-test-secret-key-not-for-production",
    "SECURE_SSL_REDIRECT": "false",
}


@pytest.fixture
def chaos_env(worker_env: dict[str, str]) -> dict[str, str]:
    """The worker environment on the chaos settings: production-like connections and timings."""
    env = {k: v for k, v in worker_env.items() if k != "PYTEST_CURRENT_TEST"}
    return {**env, **PROCESS_SETTINGS, "DJANGO_SETTINGS_MODULE": "tests.chaos.settings"}


@pytest.fixture
def web(transactional_db: None, chaos_env: dict[str, str]) -> Iterator[WebProcess]:
    """gunicorn as the Procfile runs it, on a free port; killed before the database is flushed."""
    process = WebProcess(chaos_env)
    try:
        process.wait_ready()
        yield process
    finally:
        process.kill()


@pytest.fixture
def shop(
    web: WebProcess,
    start_workers: Callable[..., list[WorkerProcess]],
    celery_processes: list[CeleryProcess],
    chaos_env: dict[str, str],
    redis_client: redis.Redis,
) -> Shop:
    """Web, two workers and beat on this test's database and Redis db; customers and a catalog."""
    for sku in SKUS:
        product_create(sku=sku, name=f"Chaos item {sku}", price=Decimal("9.90"), stock=STOCK)
    customers = [_customer(i) for i in range(CUSTOMERS)]
    workers = start_workers(2, concurrency=WORKER_CONCURRENCY, beat=True,
                            **PROCESS_SETTINGS,
                            DJANGO_SETTINGS_MODULE=chaos_env["DJANGO_SETTINGS_MODULE"])  # fmt: skip

    def restart_worker() -> WorkerProcess:
        worker = WorkerProcess(chaos_env, WORKER_CONCURRENCY, ALL_QUEUES, wait=False)
        celery_processes.append(worker)  # killed at teardown like the others
        return worker

    return Shop(web, workers, restart_worker, redis_client, customers, list(SKUS))


def _customer(index: int) -> Customer:
    user = get_user_model().objects.create_user(
        f"chaos-{index}", f"chaos-{index}@example.com", "chaos-password-1"
    )
    return Customer(user.username, Token.objects.create(user=user).key)
