"""Where the milliseconds go between a commit and its handler's start (one event per commit).

A small companion of the peer-shaped run: the same producer (a business row and
`events_record` per transaction, paced) against the Procfile's worker and beat,
with a timestamp at each stage of the path:

    commit -> dispatcher thread takes it -> publish returned -> Celery task starts
    in the pool process (task_prerun) -> handler starts

Prints the median and p99 of each hop, then one JSON line. Same database and
broker as bench/outbox.py (`<DATABASE_URL name>_bench`).

    BENCH_PATH_EVENTS=500 BENCH_PATH_RATE=100 .venv/bin/python bench/path_latency.py
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

EVENTS = int(os.environ.get("BENCH_PATH_EVENTS", 500))
RATE = float(os.environ.get("BENCH_PATH_RATE", 100.0))
# Hash of delivery id -> wall-clock second its Celery task started in the pool process.
PRERUN_KEY = "bench:task_prerun"


def main() -> None:
    from bench.outbox import _environment

    env = {**_environment(), "BENCH_TRACE_PRERUN": "1"}
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from bench import peer_run
    from bench.workers import beat_start, worker_start

    peer_run.business_table_ensure()
    peer_run.peer.schema_ensure()
    worker = worker_start(env, name="path-latency-worker")
    beat = beat_start(env, name="path-latency-beat")
    try:
        _run(50)  # warm-up
        used = worker.cpu_seconds() + beat.cpu_seconds()
        figures = _run(EVENTS)
        cpu_ms = 1000 * (worker.cpu_seconds() + beat.cpu_seconds() - used) / EVENTS
    finally:
        beat.stop()
        worker.stop()
    for name, values in figures.items():
        print(f"{name:28} p50 {values['p50']:8.2f} ms   p99 {values['p99']:8.2f} ms")
    print(f"worker and beat CPU per event: {cpu_ms:.3f} ms")
    summary = {"events": EVENTS, "rate": RATE, "worker_cpu_ms_per_event": round(cpu_ms, 3)}
    print(json.dumps({**summary, "load_avg": round(os.getloadavg()[0], 2), **figures}))


def _run(events: int) -> dict[str, dict[str, float]]:
    from django.db import connection

    from bench.handlers import STARTED_KEY
    from bench.peer_run import SHOPFLOW, _commit_one, _reset
    from bench.scenarios import _until, broker, percentile
    from outbox import relay

    _reset()
    client = broker()
    client.delete(PRERUN_KEY)
    taken: dict[int, float] = {}
    published: dict[int, float] = {}
    batch = relay._dispatch_batch

    def traced_batch(handed: list) -> None:
        now = time.time()
        ids = [pk for _, rows in handed for pk, _ in rows]
        taken.update(dict.fromkeys(ids, now))
        batch(handed)
        published.update(dict.fromkeys(ids, time.time()))

    relay._dispatch_batch = traced_batch
    committed: dict[int, float] = {}
    began = time.monotonic()
    try:
        for seq in range(events):
            pause = began + seq / RATE - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            _commit_one(SHOPFLOW, seq, True, committed)
        if not _until(lambda: client.hlen(STARTED_KEY) >= events, 60, interval=0.05):
            raise TimeoutError("not all handled")
    finally:
        relay._dispatch_batch = batch
    started = {int(k): float(v) for k, v in client.hgetall(STARTED_KEY).items()}
    prerun = {int(k): float(v) for k, v in client.hgetall(PRERUN_KEY).items()}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT d.id, (e.payload->>'seq')::int FROM outbox_delivery d"
            " JOIN outbox_outboxevent e ON e.id = d.event_id"
        )
        seq_of = dict(cursor.fetchall())
    hops: dict[str, list[float]] = {k: [] for k in (
        "commit->dispatcher", "dispatcher->published", "published->task_prerun",
        "task_prerun->handler", "commit->handler")}  # fmt: skip
    for pk, seq in seq_of.items():
        if pk not in taken or pk not in prerun:
            continue
        stamps = [committed[seq], taken[pk], published[pk], prerun[pk], started[seq]]
        for name, (a, b) in zip(hops, itertools.pairwise(stamps), strict=False):
            hops[name].append((b - a) * 1000)
        hops["commit->handler"].append((started[seq] - committed[seq]) * 1000)
    return {name: _percentiles(v, percentile) for name, v in hops.items() if v}


def _percentiles(values: list[float], percentile: object) -> dict[str, float]:
    ranked = sorted(values)
    return {"p50": round(percentile(ranked, 0.5), 2), "p99": round(percentile(ranked, 0.99), 2)}


if __name__ == "__main__":
    main()
