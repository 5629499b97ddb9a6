"""Benchmark of the fulfilment saga end to end: orders placed over HTTP until confirmed.

Web (gunicorn), a prefork Celery worker and beat run as real processes, as
the Procfile runs them. Orders are posted at a steady rate (open loop, from
bench/loadgen.py in its own process); a saga's duration is from
`Order.created_at` to the `occurred_at` of its `order.confirmed` timeline entry.

Three phases, each with freshly started processes and empty tables:

1. goal: `--rate` orders/s (100) for `--seconds` (60), relay woken on commit.
   `orders_per_s` is the sagas confirmed over the time from the first placement
   to the last confirmation: the offered rate when the machine keeps up, its
   capacity when not. Saga percentiles cover every order placed; one still
   unfinished when `--settle` runs out counts as slower than all (`null` if a
   percentile is one).
2. and 3. latency at a rate the machine sustains (half the goal phase's
   throughput, at most `--rate`), first woken on commit, then with
   OUTBOX_WAKE_ON_COMMIT=false (beat's polling alone): `ratio_vs_polling_only`
   is the polling phase's saga p50 over the woken one's, at the same rate.

Prints a table, then one JSON line (the last line).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, bench/ would come first on sys.path and bench/outbox.py would
# shadow the `outbox` app; the repository root must come first.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

CUSTOMERS = 200
PRODUCTS = 20
ORDERS_PATH = "/api/orders/"
IDLE_SECONDS = 5.0
# Kombu's bookkeeping of messages a worker had taken when it stopped.
KOMBU_KEYS = ("unacked", "unacked_index", "unacked_mutex")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="goal phase placement time")
    parser.add_argument("--rate", type=float, default=100.0, help="goal phase orders/s")
    parser.add_argument(
        "--latency-seconds", type=float, default=15.0, help="placement time of phases 2 and 3"
    )
    parser.add_argument(
        "--latency-rate", type=float, default=0.0, help="orders/s of phases 2 and 3 (0: auto)"
    )
    parser.add_argument("--settle", type=float, default=30.0, help="max wait for sagas, seconds")
    # As the Procfile: on 2 cores the sagas are CPU-bound well before 2 processes' waits bind.
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork)")
    parser.add_argument("--web-workers", type=int, default=1, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    args = parser.parse_args()
    if min(args.seconds, args.rate, args.latency_seconds, args.settle, args.concurrency) <= 0:
        parser.error("durations, rates and --concurrency must be positive")
    return args


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Phase:
    name: str
    rate: float
    placed: int  # 201 answers
    dropped: int  # not sent in time: the web process fell behind the rate
    http_ms: list[float]  # sorted
    saga_ms: list[float]  # confirmed orders, sorted
    unfinished: int
    other: int  # failed or cancelled: none expected
    confirmed_per_s: float  # confirmed / (last confirmation - first placement)
    settle_seconds: float
    # Per confirmed order, the idle cost subtracted; meaningful when none is unfinished.
    cpu_ms_per_order: dict[str, float]

    def saga(self, fraction: float) -> float | None:
        """Nearest-rank percentile over every order; None when it falls on an unfinished one."""
        total = len(self.saga_ms) + self.unfinished
        if not total:
            return None
        rank = max(0, min(total - 1, math.ceil(fraction * total) - 1))
        return round(self.saga_ms[rank], 1) if rank < len(self.saga_ms) else None

    def http(self, fraction: float) -> float | None:
        from bench.scenarios import percentile

        return round(percentile(self.http_ms, fraction), 1) if self.http_ms else None


def _pending() -> int:
    from orders.models import Order, Status

    return Order.objects.filter(status=Status.PENDING).count()


def _wait_settled(timeout: float) -> float:
    """Seconds until no order is pending (or `timeout`)."""
    started = time.monotonic()
    while _pending() and time.monotonic() - started < timeout:
        time.sleep(0.25)
    return time.monotonic() - started


_SAGAS_SQL = """
SELECT extract(epoch FROM t.occurred_at - o.created_at) * 1000, extract(epoch FROM t.occurred_at)
FROM orders_order o
JOIN orders_timelineentry t ON t.order_id = o.id AND t.type = 'order.confirmed'
"""


def _confirmed() -> list[tuple[float, float]]:
    """(saga ms, confirmed at epoch second) of every confirmed order."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(_SAGAS_SQL)
        return [(float(ms), float(at)) for ms, at in cursor.fetchall()]


def _reset() -> None:
    """Empty tables and queues, and kombu's record of messages taken by stopped workers."""
    import redis
    from django.conf import settings

    from bench.shop import shop_reset

    shop_reset()
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(*KOMBU_KEYS)


def run_phase(name: str, args: argparse.Namespace, *, wake: bool, rate: float, seconds: float,
              tokens: list[str], bodies: list[dict]) -> Phase:  # fmt: skip
    """Start web, worker and beat with the relay's wake-up on or off; place; wait; measure."""
    from django.db.models import Count

    from bench.cpu import CpuMeter
    from bench.web import Gunicorn, load_run
    from bench.workers import beat_start, worker_start
    from orders.models import Order, Status

    _reset()
    env = {**os.environ, "OUTBOX_WAKE_ON_COMMIT": "true" if wake else "false"}
    worker = worker_start(env, concurrency=args.concurrency, name=f"saga-worker-{name}")
    beat = beat_start(env, name=f"saga-beat-{name}")
    try:
        web = Gunicorn(env, workers=args.web_workers, threads=args.threads, name=f"saga-web-{name}")
    except BaseException:
        beat.stop()
        worker.stop()
        raise
    try:
        # Warm every process (imports, connections), then start from empty tables.
        load_run(web.port, ORDERS_PATH, tokens, bodies, duration=2, connections=8, rate=10)
        _wait_settled(30)
        _reset()
        processes = {"web": web.proc.pid, "worker": worker.proc.pid, "beat": beat.proc.pid}
        # What beat's polls and the watchdog cost with no order at all, per second.
        idle = CpuMeter(**processes).start()
        time.sleep(IDLE_SECONDS)
        idle_per_s = {name: used / IDLE_SECONDS for name, used in idle.stop().items()}
        _log(f"{name}: placing {rate:.0f} orders/s for {seconds:g} s")
        meter = CpuMeter(**processes).start()
        began = time.time()
        load = load_run(web.port, ORDERS_PATH, tokens, bodies, duration=seconds,
                        connections=64, rate=rate)  # fmt: skip
        _log(f"{name}: placed {load.ok(201)}, {_pending()} sagas running; waiting")
        settle = _wait_settled(args.settle)
        cpu = meter.stop()
        settled = time.time()
        _log(f"{name}: settled after {settle:.1f} s, {_pending()} unfinished")
    finally:
        web.stop()
        beat.stop()
        worker.stop()
    confirmed = _confirmed()
    by_status = dict(Order.objects.values_list("status").annotate(n=Count("id")))
    _reset()
    if load.error_count or load.ok(201) != load.requests:
        sys.exit(f"bench: placement failed: {load.statuses}, {load.errors[:3]}")
    last_confirmed = max((at for _, at in confirmed), default=began)
    elapsed = settled - began
    busy = {name: max(0.0, used - idle_per_s[name] * elapsed) for name, used in cpu.items()}
    return Phase(
        name=name,
        rate=rate,
        placed=load.ok(201),
        dropped=load.dropped,
        http_ms=load.latencies_ms,
        saga_ms=sorted(ms for ms, _ in confirmed),
        unfinished=by_status.get(Status.PENDING, 0),
        other=sum(n for s, n in by_status.items() if s not in (Status.CONFIRMED, Status.PENDING)),
        confirmed_per_s=len(confirmed) / max(last_confirmed - began, 1e-9),
        settle_seconds=settle,
        cpu_ms_per_order={
            name: round(used * 1000 / max(len(confirmed), 1), 1) for name, used in busy.items()
        },
    )


def main() -> None:
    args = _arguments()
    from bench.shop import (
        catalog_ensure,
        customers_ensure,
        django_ready,
        environment,
        machine,
        order_bodies,
    )

    environment()
    django_ready()
    began = time.monotonic()
    started = machine()
    tokens = customers_ensure(CUSTOMERS)
    bodies = order_bodies(catalog_ensure(PRODUCTS))
    common = {"tokens": tokens, "bodies": bodies}
    goal = run_phase("goal", args, wake=True, rate=args.rate, seconds=args.seconds, **common)
    sustained = goal.confirmed_per_s
    rate = args.latency_rate or max(1.0, min(args.rate, round(sustained / 2)))
    latency = {"rate": rate, "seconds": args.latency_seconds, **common}
    woken = run_phase("woken", args, wake=True, **latency)
    polling = run_phase("polling", args, wake=False, **latency)
    woken_p50, polling_p50 = woken.saga(0.50), polling.saga(0.50)
    result = {
        "orders_per_s": round(sustained, 1),
        "saga_p50_ms": goal.saga(0.50),
        "saga_p99_ms": goal.saga(0.99),
        "ratio_vs_polling_only": round(polling_p50 / woken_p50, 1)
        if woken_p50 and polling_p50
        else None,
        "rate_offered_per_s": args.rate,
        "placed": goal.placed,
        "not_sent_in_time": goal.dropped,
        "unfinished": goal.unfinished,
        "failed_or_cancelled": goal.other + woken.other + polling.other,
        # CPU per order when every saga finishes (the woken phase), idle cost taken
        # out: 2 cores divided by its sum is the most this machine could confirm.
        "cpu_ms_per_order": woken.cpu_ms_per_order,
        "cpu_ceiling_orders_per_s": round(2000 / max(sum(woken.cpu_ms_per_order.values()), 1), 1),
        "http_p50_ms": goal.http(0.50),
        "http_p99_ms": goal.http(0.99),
        "latency_rate_per_s": rate,
        "woken_saga_p50_ms": woken_p50,
        "woken_saga_p99_ms": woken.saga(0.99),
        "polling_saga_p50_ms": polling_p50,
        "polling_saga_p99_ms": polling.saga(0.99),
        "woken_unfinished": woken.unfinished,
        "polling_unfinished": polling.unfinished,
        "goal_seconds": args.seconds,
        "latency_seconds": args.latency_seconds,
        "worker_concurrency": args.concurrency,
        "gunicorn": f"{args.web_workers} workers x {args.threads} threads",
        **started,
        "load_avg_at_end": round(os.getloadavg()[0], 2),
        "seconds": round(time.monotonic() - began),
    }
    _print_table(result)
    print(json.dumps(result))


def _print_table(r: dict) -> None:
    rows = [
        (f"offered {r['rate_offered_per_s']:g}/s for {r['goal_seconds']:g} s", "", ""),
        ("  confirmed (orders/s)", r["orders_per_s"], ">= 100"),
        ("  saga p50 (ms)", r["saga_p50_ms"], "<= 100"),
        ("  saga p99 (ms)", r["saga_p99_ms"], "<= 500"),
        ("  placement HTTP p50 / p99 (ms)", f"{r['http_p50_ms']} / {r['http_p99_ms']}", ""),
        ("  unfinished after settling", r["unfinished"], f"of {r['placed']}"),
        ("  CPU ms per order (woken phase)", round(sum(r["cpu_ms_per_order"].values()), 1),
         " ".join(f"{k} {v}" for k, v in r["cpu_ms_per_order"].items())),
        ("  2 idle cores would confirm (/s)", r["cpu_ceiling_orders_per_s"], "at most"),
        (f"at {r['latency_rate_per_s']:g}/s, woken: saga p50 (ms)", r["woken_saga_p50_ms"], ""),
        ("  saga p99 (ms)", r["woken_saga_p99_ms"], ""),
        ("  polling only: saga p50 (ms)", r["polling_saga_p50_ms"],
         f"x{r['ratio_vs_polling_only']}"),
        ("  polling only: saga p99 (ms)", r["polling_saga_p99_ms"], ""),
    ]  # fmt: skip
    for name, value, note in rows:
        print(f"{name:38} {value!s:>14}  {note}")


if __name__ == "__main__":
    main()
