"""CPU of one `outbox.deliver` publish on the Redis broker: `apply_async` against the template.

In process, no worker, nothing but this process on the Redis database given:
rounds alternate the two ways (`apply_async` with a reused producer, as the relay
called it; `shopflow.broker.tasks_publish`), each also through the relay's
`deliveries_publish` (one delivery per call, as the dispatcher thread publishes
one commit), and print CPU µs per message (`time.process_time()`), then a
cProfile of each way by the functions that take the most. The queue it fills
(`events`) is emptied after each round: use a Redis database nobody consumes.

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

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

MESSAGES = int(os.environ.get("BENCH_PUBLISH_MESSAGES", 3000))
ROUNDS = int(os.environ.get("BENCH_PUBLISH_ROUNDS", 4))
QUEUE = "events"  # where `deliveries_publish` sends an unknown handler's deliveries
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


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    ways = _ways()
    for run in ways.values():  # warm: templates built, producer and connection made
        run(200)
    client.delete(QUEUE)
    figures: dict[str, list[float]] = {label: [] for label in ways}
    for _ in range(ROUNDS):
        for label, run in ways.items():
            figures[label].append(round(_cpu_us(run, MESSAGES), 1))
            client.delete(QUEUE)
    for label, run in ways.items():
        _profile(label, run, MESSAGES // 3)
        client.delete(QUEUE)
    medians = {label: statistics.median(values) for label, values in figures.items()}
    result = {
        "cpu_us_per_publish": medians,
        "cpu_us_per_publish_rounds": figures,
        "template_ratio": round(medians["template"] / medians["apply_async"], 2),
        "deliveries_publish_ratio": round(
            medians["deliveries_publish/template"] / medians["deliveries_publish/apply_async"], 2
        ),
        "messages_per_round": MESSAGES,
        "load_avg": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
