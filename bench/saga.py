"""Benchmark of the fulfilment saga end to end: orders placed over HTTP until confirmed.

Web (gunicorn), a prefork Celery worker and beat run as real processes, as
the Procfile runs them. Orders are posted at a steady rate (open loop, from
bench/loadgen.py in its own process); a saga's duration is from
`Order.created_at` to the `occurred_at` of its `order.confirmed` timeline entry.

Four phases, each with freshly started processes and empty tables:

1. saturation: `--rate` orders/s (100) for `--seconds` (30), relay woken on
   commit. `confirmed_orders_per_s_at_saturation` is the sagas confirmed over
   the time from the first placement to the last confirmation: the offered
   rate when the machine keeps up, its capacity when not.
2. cost: `--cost-rate` orders/s (5) for `--cost-seconds` (20), waiting up to
   `--cost-settle` (90 s) until every saga has finished, so that the cost per
   confirmed order covers whole sagas: CPU of web, worker, beat and their
   PostgreSQL backends (what 5 s with no order cost taken out), SQL
   statements and Celery tasks (counted in each process by `bench.counting`,
   installed only by `bench.saga_settings`). `two_idle_cores_orders_per_s` =
   2000 ms / `cpu_ms_per_confirmed_order`.
3. goal: `--latency-rate` orders/s (20, the goal's rate) for
   `--latency-seconds` (15), woken on commit: `saga_p50_ms` and `saga_p99_ms`
   cover every order placed, one still unfinished when `--settle` (30 s) runs
   out counting as slower than all (`null` if a percentile is one).
4. polling: the cost phase's rate for `--polling-seconds` (10) with
   OUTBOX_WAKE_ON_COMMIT=false (beat's polling alone): `ratio_vs_polling_only`
   is its saga p50 over the cost phase's (woken, same rate).

The sandboxes run without their delays (PAYMENT_/SHIPPING_SANDBOX_DELAY_SECONDS=0).

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
    parser.add_argument("--seconds", type=float, default=30.0, help="saturation placement time")
    parser.add_argument("--rate", type=float, default=100.0, help="saturation orders/s")
    parser.add_argument("--cost-rate", type=float, default=5.0, help="cost phase orders/s")
    parser.add_argument("--cost-seconds", type=float, default=20.0, help="cost phase time")
    parser.add_argument(
        "--cost-settle", type=float, default=90.0, help="max wait for the cost phase's sagas"
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=15.0, help="placement time of the goal phase"
    )
    parser.add_argument(
        "--latency-rate", type=float, default=20.0, help="orders/s of phases 2 and 3"
    )
    parser.add_argument(
        "--polling-seconds", type=float, default=10.0, help="placement time of phase 3"
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
    # Statements and tasks per confirmed order (idle share subtracted), by counter name.
    counts_per_order: dict[str, float]

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
              tokens: list[str], bodies: list[dict],
              settle: float | None = None) -> Phase:  # fmt: skip
    """Start web, worker and beat with the relay's wake-up on or off; place; wait; measure."""
    from django.db.models import Count

    from bench.counting import counters
    from bench.cpu import CpuMeter
    from bench.web import Gunicorn, load_run
    from bench.workers import beat_start, worker_start
    from orders.models import Order, Status

    _reset()
    env = {**os.environ, "OUTBOX_WAKE_ON_COMMIT": "true" if wake else "false"}
    worker = worker_start({**env, "BENCH_PROCESS_KIND": "worker"}, concurrency=args.concurrency,
                          name=f"saga-worker-{name}")  # fmt: skip
    beat = beat_start({**env, "BENCH_PROCESS_KIND": "beat"}, name=f"saga-beat-{name}")
    try:
        web = Gunicorn({**env, "BENCH_PROCESS_KIND": "web"}, workers=args.web_workers,
                       threads=args.threads, name=f"saga-web-{name}")  # fmt: skip
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
        counters.reset()
        time.sleep(IDLE_SECONDS)
        idle_per_s = {name: used / IDLE_SECONDS for name, used in idle.stop().items()}
        idle_counts = counters.read()
        _log(f"{name}: placing {rate:.0f} orders/s for {seconds:g} s")
        counters.reset()
        meter = CpuMeter(**processes).start()
        began = time.time()
        load = load_run(web.port, ORDERS_PATH, tokens, bodies, duration=seconds,
                        connections=64, rate=rate)  # fmt: skip
        _log(f"{name}: placed {load.ok(201)}, {_pending()} sagas running; waiting")
        settle = _wait_settled(settle or args.settle)
        cpu = meter.stop()
        settled = time.time()
        _log(f"{name}: settled after {settle:.1f} s, {_pending()} unfinished")
    finally:
        web.stop()
        beat.stop()
        worker.stop()  # its pool processes add what they had not yet counted
    counted = counters.read()
    confirmed = _confirmed()
    by_status = dict(Order.objects.values_list("status").annotate(n=Count("id")))
    _reset()
    if load.error_count or load.ok(201) != load.requests:
        sys.exit(f"bench: placement failed: {load.statuses}, {load.errors[:3]}")
    last_confirmed = max((at for _, at in confirmed), default=began)
    elapsed = settled - began
    busy = {name: max(0.0, used - idle_per_s[name] * elapsed) for name, used in cpu.items()}
    scale = elapsed / IDLE_SECONDS
    net = {key: max(0.0, n - idle_counts.get(key, 0) * scale) for key, n in counted.items()}
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
        counts_per_order={
            key: round(n / max(len(confirmed), 1), 2) for key, n in sorted(net.items())
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

    environment(
        DJANGO_SETTINGS_MODULE="bench.saga_settings",
        PAYMENT_SANDBOX_DELAY_SECONDS="0",
        SHIPPING_SANDBOX_DELAY_SECONDS="0",
    )
    django_ready()
    began = time.monotonic()
    started = machine()
    tokens = customers_ensure(CUSTOMERS)
    bodies = order_bodies(catalog_ensure(PRODUCTS))
    common = {"tokens": tokens, "bodies": bodies}
    saturated = run_phase("saturation", args, wake=True, rate=args.rate, seconds=args.seconds,
                          **common)  # fmt: skip
    cost = run_phase("cost", args, wake=True, rate=args.cost_rate, seconds=args.cost_seconds,
                     settle=args.cost_settle, **common)  # fmt: skip
    rate = min(args.rate, args.latency_rate)
    goal = run_phase("goal", args, wake=True, rate=rate, seconds=args.latency_seconds, **common)
    polling = run_phase("polling", args, wake=False, rate=args.cost_rate,
                        seconds=args.polling_seconds, **common)  # fmt: skip
    print(json.dumps(_result(args, saturated, cost, goal, polling, started, began)))


def _result(args: argparse.Namespace, saturated: Phase, cost: Phase, goal: Phase,
            polling: Phase, started: dict, began: float) -> dict:  # fmt: skip
    """The figures, as the last JSON line; the table goes before it."""
    woken_p50, polling_p50 = cost.saga(0.50), polling.saga(0.50)
    cpu = round(sum(cost.cpu_ms_per_order.values()), 1)
    counts = cost.counts_per_order
    result = {
        "cpu_ms_per_confirmed_order": cpu,
        # What two idle cores would carry at this cost, beside what this machine confirmed.
        "two_idle_cores_orders_per_s": round(2000 / max(cpu, 0.1), 1),
        "confirmed_orders_per_s_at_saturation": round(saturated.confirmed_per_s, 1),
        "saga_p50_ms": goal.saga(0.50),
        "saga_p99_ms": goal.saga(0.99),
        "saga_rate_per_s": goal.rate,
        "statements_per_order": round(
            sum(v for k, v in counts.items() if k in ("sql:web", "sql:worker", "sql:beat")), 1
        ),
        "celery_messages_per_order": round(
            sum(v for k, v in counts.items() if k.startswith("task:")), 2
        ),
        "cpu_ms_per_order": cost.cpu_ms_per_order,
        "cost_rate_per_s": cost.rate,
        "cost_confirmed": cost.placed - cost.unfinished - cost.other,
        "cost_unfinished": cost.unfinished,
        "statements_by_process": {
            k[4:]: v for k, v in counts.items() if k in ("sql:web", "sql:worker", "sql:beat")
        },
        "tasks_per_order": {k[5:]: v for k, v in counts.items() if k.startswith("task:")},
        "statements_per_order_by_task": {
            k[9:]: v for k, v in counts.items() if k.startswith("sql:task:")
        },
        # The CPU of each task's body, and of each outbox handler's own call inside
        # the deliveries; the worker's CPU outside the task bodies is Celery's.
        "cpu_ms_per_order_by_task": {
            k[12:]: round(v / 1000, 2) for k, v in counts.items() if k.startswith("cpu_us:task:")
        },
        "cpu_ms_per_order_by_handler": {
            k[15:]: round(v / 1000, 2) for k, v in counts.items() if k.startswith("cpu_us:handler:")
        },
        "statements_per_order_by_handler": {
            k[12:]: v for k, v in counts.items() if k.startswith("sql:handler:")
        },
        "goal_unfinished": goal.unfinished,
        "goal_placed": goal.placed,
        "ratio_vs_polling_only": round(polling_p50 / woken_p50, 1)
        if woken_p50 and polling_p50
        else None,
        "woken_saga_p50_ms": woken_p50,
        "woken_saga_p99_ms": cost.saga(0.99),
        "polling_saga_p50_ms": polling_p50,
        "polling_saga_p99_ms": polling.saga(0.99),
        "saturation_rate_offered_per_s": args.rate,
        "saturation_placed": saturated.placed,
        "saturation_not_sent_in_time": saturated.dropped,
        "saturation_unfinished": saturated.unfinished,
        "saturation_cpu_ms_per_confirmed_order": round(sum(saturated.cpu_ms_per_order.values()), 1),
        "saturation_tasks_per_order": {
            k[5:]: v for k, v in saturated.counts_per_order.items() if k.startswith("task:")
        },
        "failed_or_cancelled": saturated.other + goal.other + polling.other,
        "http_p50_ms": goal.http(0.50),
        "http_p99_ms": goal.http(0.99),
        "seconds_per_phase": [
            args.seconds,
            args.cost_seconds,
            args.latency_seconds,
            args.polling_seconds,
        ],
        "worker_concurrency": args.concurrency,
        "gunicorn": f"{args.web_workers} workers x {args.threads} threads",
        **started,
        "load_avg_at_end": round(os.getloadavg()[0], 2),
        "seconds": round(time.monotonic() - began),
    }
    _print_table(result)
    return result


def _print_table(r: dict) -> None:
    rows = [
        (f"at {r['saga_rate_per_s']:g} orders/s offered, woken on commit", "", ""),
        ("  saga p50 (ms)", r["saga_p50_ms"], "<= 50"),
        ("  saga p99 (ms)", r["saga_p99_ms"], "<= 250"),
        ("  unfinished after settling", r["goal_unfinished"], f"of {r['goal_placed']}"),
        (f"at {r['cost_rate_per_s']:g}/s, every saga finished: CPU ms per order",
         r["cpu_ms_per_confirmed_order"],
         "<= 25; " + " ".join(f"{k} {v}" for k, v in r["cpu_ms_per_order"].items())),
        ("  what two idle cores would carry (/s)", r["two_idle_cores_orders_per_s"], ">= 80"),
        ("  SQL statements per order", r["statements_per_order"],
         " ".join(f"{k} {v}" for k, v in r["statements_by_process"].items())),
        ("  Celery messages per order", r["celery_messages_per_order"], ""),
        (f"offered {r['saturation_rate_offered_per_s']:g}/s: confirmed /s",
         r["confirmed_orders_per_s_at_saturation"], "measured at saturation"),
        (f"at {r['cost_rate_per_s']:g}/s, woken: saga p50 / p99 (ms)",
         f"{r['woken_saga_p50_ms']} / {r['woken_saga_p99_ms']}", ""),
        ("  polling only: saga p50 / p99 (ms)",
         f"{r['polling_saga_p50_ms']} / {r['polling_saga_p99_ms']}",
         f"x{r['ratio_vs_polling_only']}"),
    ]  # fmt: skip
    for name, value, note in rows:
        print(f"{name:48} {value!s:>14}  {note}")
    for name, per_task in r["statements_per_order_by_task"].items():
        tasks = r["tasks_per_order"].get(name, 0)
        cpu = r["cpu_ms_per_order_by_task"].get(name, 0)
        print(f"  {name:38} {tasks:>6} tasks, {per_task:>6} statements, {cpu:>6} CPU ms per order")
    in_tasks = sum(r["cpu_ms_per_order_by_task"].values())
    print(
        f"  {'worker CPU outside task bodies (Celery)':38} "
        f"{r['cpu_ms_per_order'].get('worker', 0) - in_tasks:>6.1f} CPU ms per order"
    )
    for name, cpu in r["cpu_ms_per_order_by_handler"].items():
        sql = r["statements_per_order_by_handler"].get(name, 0)
        print(f"    handler {name:30} {sql:>6} statements, {cpu:>6} CPU ms per order")


if __name__ == "__main__":
    main()
