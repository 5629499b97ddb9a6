"""The measurements: relay alone, end to end through a worker, and commit-to-handler latency."""

from __future__ import annotations

import time
from collections.abc import Callable
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
    relay_cpu_ms: float  # this process's CPU per event (PostgreSQL's and Redis' not counted)
    messages: int
    naive_per_s: float
    polling_per_s: float
    polling_busy_per_s: float


def _relay_seeded(events: int) -> None:
    clean_slate()
    with transaction.atomic():
        events_seed(events, aggregates=events)  # one event per aggregate: all claimable
    outbox_analyze()


def _drain_all(events: int) -> tuple[float, float]:
    """Seconds and CPU seconds for ShopFlow's relay to publish `events` seeded events."""
    _relay_seeded(events)
    started, cpu = time.perf_counter(), time.process_time()
    claimed = 0
    while claimed < events:
        claimed += relay.drain(max_seconds=600)
    return time.perf_counter() - started, time.process_time() - cpu


def relay_throughput(events: int) -> RelayFigures:
    """Drain `events` pre-inserted events with no worker consuming, and the baselines.

    ShopFlow's relay runs before and after the baselines, so drift in the
    machine's load shows in both halves; the mean of the two is reported.
    """
    first = _drain_all(events)
    messages = broker().llen("events")
    _relay_seeded(events)
    naive = baselines.naive_relay_run(settings.OUTBOX_BATCH_SIZE)
    _relay_seeded(events)
    polling = baselines.polling_relay_run()
    second = _drain_all(events)
    clean_slate()
    return RelayFigures(
        events=events,
        relay_per_s=2 * events / (first[0] + second[0]),
        relay_cpu_ms=1000 * (first[1] + second[1]) / (2 * events),
        messages=messages,
        naive_per_s=naive.per_second(),
        polling_per_s=polling.per_second(),
        polling_busy_per_s=polling.per_second(interval=0),
    )


def _until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until it holds; False when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _outbox_state() -> str:
    """Deliveries by status and lease, for a step that never finished."""
    from django.db.models import Count, Q

    counts = Delivery.objects.values("status").annotate(
        n=Count("id"), leased=Count("id", filter=Q(lease_id__isnull=False))
    )
    return ", ".join(f"{c['status']}={c['n']} (leased {c['leased']})" for c in counts)


@dataclass(frozen=True)
class Throughput:
    done: int
    seconds: float
    finished: bool  # False: the timeout cut the run short; the rate covers what was done

    @property
    def per_second(self) -> float:
        return self.done / self.seconds


def e2e_throughput(events: int, aggregates: int, timeout: float = 60) -> Throughput:
    """Commit `events` events in one transaction; events/s until every handler ran."""
    clean_slate()
    committed: list[float] = []
    with transaction.atomic():
        transaction.on_commit(lambda: committed.append(time.time()))
        events_seed(events, aggregates=aggregates)
        transaction.on_commit(relay.relay_wake)  # as events_record does
    pending = Delivery.objects.filter(status=Delivery.Status.PENDING)
    finished = _until(lambda: not pending.exists(), timeout, interval=0.05)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), extract(epoch FROM max(done_at)) FROM outbox_delivery"
            " WHERE status = 'done'"
        )
        count, last_done = cursor.fetchone()
    clean_slate()
    return Throughput(count, float(last_done) - committed[0], finished)


def raw_celery_throughput(tasks: int, timeout: float = 60) -> Throughput:
    """Bare no-op tasks/s: publish `tasks` on one producer; until the last one ran."""
    from bench.tasks import noop
    from shopflow.celery import app

    clean_slate()
    client = broker()
    started = time.time()
    with app.producer_or_acquire() as producer:
        for _ in range(tasks):
            noop.apply_async(queue="events", producer=producer)
    finished = _until(lambda: int(client.get(NOOP_DONE_KEY) or 0) >= tasks, timeout)
    seconds, count = time.time() - started, int(client.get(NOOP_DONE_KEY) or 0)
    clean_slate()
    return Throughput(count, seconds, finished)


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
    if not _until(lambda: client.hlen(STARTED_KEY) >= events, timeout=60, interval=0.05):
        raise TimeoutError(f"latency: events not all handled after 60s: {_outbox_state()}")
    handled = {int(k): float(v) for k, v in client.hgetall(STARTED_KEY).items()}
    clean_slate()
    return sorted((handled[seq] - committed[seq]) * 1000 for seq in committed)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def round_trips_ms(samples: int = 200) -> dict[str, float]:
    """Median PostgreSQL and Redis round trips now: how contended the machine is."""
    client = broker()
    with connection.cursor() as cursor:
        pg = _timed(lambda: cursor.execute("SELECT 1"), samples)
    return {"pg_round_trip_ms": pg, "redis_round_trip_ms": _timed(client.ping, samples)}


def _timed(call: Callable[[], object], samples: int) -> float:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return round(percentile(sorted(times), 0.5), 3)


def database_cpu_seconds() -> float:
    """CPU used so far by the PostgreSQL backends serving the benchmark's database."""
    from bench.workers import process_cpu_seconds

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        return sum(process_cpu_seconds(pid) for (pid,) in cursor.fetchall())
