"""CPU of one `outbox.deliver` publish on the Redis broker: `apply_async` against the template.

In process, no worker, nothing but this process on the Redis database given:
rounds alternate the two ways (`apply_async` with a reused producer, as the relay
called it; `shopflow.broker.tasks_publish`), each also through the relay's
`deliveries_publish` (one delivery per call, as the dispatcher thread publishes
one commit), and print CPU µs per message (`time.process_time()`), then a
cProfile of each way by the functions that take the most.

Then the peer-shaped run's producer (`bench/peer_run.py`: a business row and
`events_record` per transaction, published at commit by the dispatcher thread,
without linger as when workers keep up), alternating the two ways too: this
process's CPU per commit, all threads. It runs in the benchmark's database
(`<name>_bench`, as bench/outbox.py) and empties the queues it fills: use a
Redis database nobody consumes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/shopflow_<you> \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/<n> .venv/bin/python bench/publish_cost.py
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

MESSAGES = int(os.environ.get("BENCH_PUBLISH_MESSAGES", 3000))
COMMITS = int(os.environ.get("BENCH_PUBLISH_COMMITS", 1500))
ROUNDS = int(os.environ.get("BENCH_PUBLISH_ROUNDS", 4))
QUEUE = "events"  # where `deliveries_publish` sends an unknown handler's deliveries
T = TypeVar("T")
HANDLER = "bench.publish-cost"  # unknown: no handler runs, the queue is the default


def _ways() -> dict[str, Callable[[int], None]]:
    """Each way to publish `count` one-delivery messages, by name."""
    from outbox import relay
    from outbox.tasks import deliver
    from shopflow import broker
    from shopflow.celery import app

    lease = str(uuid.uuid4())

    def apply_async(count: int) -> None:  # a reused producer, as a drain's many chunks
        with app.producer_or_acquire() as producer:
            for pk in range(count):
                deliver.apply_async(
                    args=(lease, [pk]), queue=QUEUE, producer=producer, argsrepr="bench"
                )

    def template(count: int) -> None:
        for pk in range(count):
            broker.tasks_publish(deliver, [broker.TaskMessage((lease, [pk]), QUEUE, "bench")])

    def relay_with(publish: Callable[..., None]) -> Callable[[int], None]:
        def run(count: int) -> None:  # one commit's delivery per call, as the dispatcher's
            kept, broker.tasks_publish = broker.tasks_publish, publish
            try:
                for pk in range(count):
                    relay.deliveries_publish(lease, [(pk, HANDLER)])
            finally:
                broker.tasks_publish = kept

        return run

    return {
        "apply_async": apply_async,
        "template": template,
        # what deliveries_publish did before: a producer from the pool, then apply_async
        "deliveries_publish/apply_async": relay_with(broker._through_celery),
        "deliveries_publish/template": relay_with(broker.tasks_publish),
    }


def _alternated(ways: dict[str, T], round_: int) -> list[tuple[str, T]]:
    """The ways in order on even rounds, reversed on odd ones (ABBA): none always goes first."""
    items = list(ways.items())
    return items if round_ % 2 == 0 else items[::-1]


def _cpu_us(run: Callable[[int], None], count: int) -> float:
    started = time.process_time()
    run(count)
    return (time.process_time() - started) / count * 1e6


def _profile(label: str, run: Callable[[int], None], count: int) -> None:
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    run(count)
    profile.disable()
    print(f"\n--- cProfile, {label}, {count} messages (cProfile inflates every call) ---")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(18)


def _producer_cpu_us(publish: Callable[..., None], commits: int) -> float:
    """This process's CPU per commit of the peer run's producer, its dispatcher thread included."""
    from django.db import connection

    from bench.peer_run import BUSINESS_TABLE, SHOPFLOW, _commit_one
    from bench.scenarios import clean_slate
    from outbox import relay
    from shopflow import broker

    clean_slate()
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {BUSINESS_TABLE}")
    committed: dict[int, float] = {}
    kept, broker.tasks_publish = broker.tasks_publish, publish
    try:
        started = time.process_time()
        for seq in range(commits):
            _commit_one(SHOPFLOW, seq, False, committed)
        while relay._dispatcher is not None and not relay._dispatcher[1].empty():
            time.sleep(0.01)
        time.sleep(0.05)  # the publish the dispatcher took last
        return (time.process_time() - started) / commits * 1e6
    finally:
        broker.tasks_publish = kept


def _producer_figures() -> dict[str, list[float]]:
    """CPU µs per commit of each way, per round."""
    from django.conf import settings

    from bench.peer_run import business_table_ensure
    from shopflow import broker

    settings.OUTBOX_DISPATCH_LINGER_SECONDS = 0  # one message per commit
    business_table_ensure()
    ways = {"apply_async": broker._through_celery, "template": broker.tasks_publish}
    for publish in ways.values():  # warm
        _producer_cpu_us(publish, 100)
    figures: dict[str, list[float]] = {label: [] for label in ways}
    for round_ in range(ROUNDS):
        for label, publish in _alternated(ways, round_):
            figures[label].append(round(_producer_cpu_us(publish, COMMITS), 1))
    return figures


def main() -> None:
    from bench.outbox import _environment

    _environment()
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command

    from bench.scenarios import clean_slate

    call_command("migrate", verbosity=0)
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    ways = _ways()
    for run in ways.values():  # warm: templates built, producer and connection made
        run(200)
    client.delete(QUEUE)
    figures: dict[str, list[float]] = {label: [] for label in ways}
    for round_ in range(ROUNDS):
        for label, run in _alternated(ways, round_):
            figures[label].append(round(_cpu_us(run, MESSAGES), 1))
            client.delete(QUEUE)
    for label, run in ways.items():
        _profile(label, run, MESSAGES // 3)
        client.delete(QUEUE)
    medians = {label: statistics.median(values) for label, values in figures.items()}
    producer = _producer_figures()
    producer_medians = {label: statistics.median(values) for label, values in producer.items()}
    clean_slate()
    result = {
        "cpu_us_per_publish": medians,
        "cpu_us_per_publish_rounds": figures,
        "template_ratio": round(medians["template"] / medians["apply_async"], 2),
        "deliveries_publish_ratio": round(
            medians["deliveries_publish/template"] / medians["deliveries_publish/apply_async"], 2
        ),
        "producer_cpu_us_per_commit": producer_medians,
        "producer_cpu_us_per_commit_rounds": producer,
        "messages_per_round": MESSAGES,
        "commits_per_round": COMMITS,
        "load_avg": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
