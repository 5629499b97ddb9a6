"""The measurements: relay alone, end to end through a worker, and commit-to-handler latency."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction

from bench import baselines
from bench.database import broker_reset, events_seed, outbox_analyze, outbox_reset
from bench.events import BenchPinged
from bench.handlers import STARTED_KEY
from bench.tasks import NOOP_DONE_KEY
from outbox import relay
from outbox.models import Delivery
from outbox.services import events_record


def broker() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def clean_slate() -> None:
    """No rows, no queued messages, no pending wake-up mark."""
    outbox_reset()
    broker_reset(broker())
    cache.delete(relay.WAKE_KEY)


@dataclass(frozen=True)
class RelayFigures:
    events: int
    relay_per_s: float
    messages: int
    naive_per_s: float
    polling_per_s: float
    polling_busy_per_s: float


def _relay_seeded(events: int) -> None:
    clean_slate()
    with transaction.atomic():
        events_seed(events, aggregates=events)  # one event per aggregate: all claimable
    outbox_analyze()


def relay_throughput(events: int) -> RelayFigures:
    """Drain `events` pre-inserted events with no worker consuming, and the baselines."""
    _relay_seeded(events)
    started = time.perf_counter()
    claimed = 0
    while claimed < events:
        claimed += relay.drain(max_seconds=600)
    seconds = time.perf_counter() - started
    messages = sum(broker().llen(q) for q in ("events",))
    _relay_seeded(events)
    naive = baselines.naive_relay_run(settings.OUTBOX_BATCH_SIZE)
    _relay_seeded(events)
    polling = baselines.polling_relay_run()
    clean_slate()
    return RelayFigures(
        events=events,
        relay_per_s=events / seconds,
        messages=messages,
        naive_per_s=naive.per_second(),
        polling_per_s=polling.per_second(),
        polling_busy_per_s=polling.per_second(interval=0),
    )


def _all_done() -> bool:
    return not Delivery.objects.filter(status=Delivery.Status.PENDING).exists()


def _wait(predicate, timeout: float, interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark step not finished after {timeout}s: {_outbox_state()}")
        time.sleep(interval)


def _outbox_state() -> str:
    """Deliveries by status and lease, for a step that never finished."""
    from django.db.models import Count, Q

    counts = Delivery.objects.values("status").annotate(
        n=Count("id"), leased=Count("id", filter=Q(lease_id__isnull=False))
    )
    return ", ".join(f"{c['status']}={c['n']} (leased {c['leased']})" for c in counts)


def e2e_throughput(events: int, aggregates: int, timeout: float = 120) -> float:
    """Commit `events` events in one transaction; events/s until every handler ran."""
    clean_slate()
    committed: list[float] = []
    with transaction.atomic():
        transaction.on_commit(lambda: committed.append(time.time()))
        events_seed(events, aggregates=aggregates)
        transaction.on_commit(relay.relay_wake)  # as events_record does
    _wait(_all_done, timeout, interval=0.02)
    with connection.cursor() as cursor:
        cursor.execute("SELECT extract(epoch FROM max(done_at)) FROM outbox_delivery")
        (last_done,) = cursor.fetchone()
    clean_slate()
    return events / (float(last_done) - committed[0])


def raw_celery_throughput(tasks: int, timeout: float = 120) -> float:
    """Bare no-op tasks/s: publish `tasks` on one producer; until the last one ran."""
    from bench.tasks import noop
    from shopflow.celery import app

    clean_slate()
    client = broker()
    started = time.time()
    with app.producer_or_acquire() as producer:
        for _ in range(tasks):
            noop.apply_async(queue="events", producer=producer)
    _wait(lambda: int(client.get(NOOP_DONE_KEY) or 0) >= tasks, timeout)
    finished = time.time()
    clean_slate()
    return tasks / (finished - started)


def latency(events: int, rate: float, aggregates: int = 50) -> list[float]:
    """Commit one traced event per transaction at `rate`/s; commit-to-handler-start in ms."""
    clean_slate()
    committed: dict[int, float] = {}
    started = time.monotonic()
    for seq in range(events):
        pause = started + seq / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        with transaction.atomic():
            # Registered first, so it runs right after COMMIT, before the wake-up.
            transaction.on_commit(lambda seq=seq: committed.__setitem__(seq, time.time()))
            events_record([BenchPinged(aggregate=f"a{seq % aggregates}", seq=seq, traced=True)])
    client = broker()
    _wait(lambda: client.hlen(STARTED_KEY) >= events, timeout=60, interval=0.05)
    handled = {int(k): float(v) for k, v in client.hgetall(STARTED_KEY).items()}
    clean_slate()
    return sorted((handled[seq] - committed[seq]) * 1000 for seq in committed)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]
