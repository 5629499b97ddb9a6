"""Benchmark of the outbox relay and delivery path: `make bench`.

Measures, in one run on this machine, ShopFlow's relay against a textbook
polling relay and a one-task-per-event relay, end-to-end delivery through a
real prefork worker against bare no-op Celery tasks, and commit-to-handler
latency at a paced rate. Prints a table, then one JSON line (the last line).

Runs in its own database (`<DATABASE_URL name>_bench`, created and migrated
when missing) and deletes the rows and queued messages it made.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

# Run as a script, this file's directory would come first on sys.path and this
# module would shadow the `outbox` app; the repository root must come first.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

METRICS_DIR = ROOT / "var" / "bench" / "prometheus"

RELAY_EVENTS = int(os.environ.get("BENCH_RELAY_EVENTS", 5_000))
E2E_EVENTS = int(os.environ.get("BENCH_E2E_EVENTS", 5_000))
E2E_AGGREGATES = int(os.environ.get("BENCH_E2E_AGGREGATES", 500))
RAW_TASKS = int(os.environ.get("BENCH_RAW_TASKS", 2_000))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 2))
# Seconds of worker-phase rounds after which no new round starts (keeps `make bench` short).
ROUNDS_BUDGET = float(os.environ.get("BENCH_ROUNDS_BUDGET", 60))
LATENCY_EVENTS = int(os.environ.get("BENCH_LATENCY_EVENTS", 1_000))
LATENCY_RATE = float(os.environ.get("BENCH_LATENCY_RATE", 100.0))
# The peer-shaped run (bench/peer_run.py): ShopFlow beside procrastinate 3.10.
PEER_SIZES = {
    "events": float(os.environ.get("BENCH_PEER_EVENTS", 2_000)),
    "latency_events": float(os.environ.get("BENCH_PEER_LATENCY_EVENTS", 1_000)),
    "rate": float(os.environ.get("BENCH_PEER_RATE", 100.0)),
    "rounds": float(os.environ.get("BENCH_PEER_ROUNDS", 2)),
}
# Only the peer-shaped run (its keys alone), for a quick look while changing the event path.
PEER_ONLY = os.environ.get("BENCH_PEER_ONLY", "") not in ("", "0")


def _environment() -> dict[str, str]:
    """Point this process and its workers at the benchmark's own database."""
    from bench.database import bench_urls

    url, broker_url, redis_url = bench_urls()
    env = {
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": broker_url,
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        # The benchmark's metric files stay apart from `make run`'s.
        "PROMETHEUS_MULTIPROC_DIR": str(METRICS_DIR),
        "PYTHONUNBUFFERED": "1",
    }
    shutil.rmtree(METRICS_DIR, ignore_errors=True)
    os.environ.update(env)
    return {**os.environ, **env}


def _machine() -> dict[str, object]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next(
            (line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")), "",
        )  # fmt: skip
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "load_avg_at_start": round(os.getloadavg()[0], 2),
    }


def _measure_with_workers(env: dict[str, str]) -> dict[str, object]:
    from bench import scenarios
    from bench.workers import beat_start, worker_start

    worker = worker_start(env, name="outbox-worker")
    beat = beat_start(env, name="outbox-beat")
    try:
        scenarios.latency(50, LATENCY_RATE)  # warm the pool's connections and imports
        latencies = scenarios.latency(LATENCY_EVENTS, LATENCY_RATE)
        e2e, raw = [], []
        cpu = {"e2e": 0.0, "raw": 0.0, "e2e_db": 0.0}
        began = time.monotonic()
        while len(e2e) < ROUNDS and (not e2e or time.monotonic() - began < ROUNDS_BUDGET):
            # Interleaved on the same worker, so noise from the machine hits both alike.
            for name, runs, measure in (
                ("raw", raw, lambda: scenarios.raw_celery_throughput(RAW_TASKS)),
                ("e2e", e2e, lambda: scenarios.e2e_throughput(E2E_EVENTS, E2E_AGGREGATES)),
            ):
                used, db_used = worker.cpu_seconds(), scenarios.database_cpu_seconds()
                runs.append(measure())
                cpu[name] += worker.cpu_seconds() - used
                if name == "e2e":
                    cpu["e2e_db"] += scenarios.database_cpu_seconds() - db_used
    finally:
        beat.stop()
        worker.stop()
    return {
        "latencies": latencies,
        "e2e": e2e,
        "raw": raw,
        # Worker CPU (main process and pool) per item: what the worker spends, whatever
        # share of the machine it gets. The e2e figure includes the relay's drains.
        "e2e_cpu_ms": 1000 * cpu["e2e"] / sum(run.done for run in e2e),
        # PostgreSQL backends' CPU per event (those that lived through the run).
        "e2e_db_cpu_ms": 1000 * cpu["e2e_db"] / sum(run.done for run in e2e),
        "raw_cpu_ms": 1000 * cpu["raw"] / sum(run.done for run in raw),
    }


def main() -> None:
    env = _environment()
    import django

    django.setup()
    from django.core.management import call_command

    from bench import scenarios

    call_command("migrate", verbosity=0)
    began = time.monotonic()
    machine = _machine()
    if PEER_ONLY:
        _print_and_dump(_peer(env), began, machine)
        return
    before = scenarios.round_trips_ms()
    relay = scenarios.relay_throughput(RELAY_EVENTS)
    measured = _measure_with_workers(env)
    scenarios.clean_slate()
    latencies = measured["latencies"]
    e2e = statistics.median(run.per_second for run in measured["e2e"])
    raw = statistics.median(run.per_second for run in measured["raw"])
    result = {
        "relay_events_per_s": round(relay.relay_per_s),
        "ratio_vs_polling": round(relay.relay_per_s / relay.polling_per_s, 1),
        "ratio_vs_naive": round(relay.relay_per_s / relay.naive_per_s, 2),
        "e2e_events_per_s": round(e2e),
        "ratio_vs_raw_celery": round(e2e / raw, 2),
        "latency_p50_ms": round(scenarios.percentile(latencies, 0.50), 2),
        "latency_p99_ms": round(scenarios.percentile(latencies, 0.99), 2),
        "polling_events_per_s": round(relay.polling_per_s, 1),
        "polling_busy_events_per_s": round(relay.polling_busy_per_s),
        "naive_events_per_s": round(relay.naive_per_s),
        "raw_celery_tasks_per_s": round(raw),
        "e2e_worker_cpu_ms_per_event": round(measured["e2e_cpu_ms"], 3),
        "raw_celery_worker_cpu_ms_per_task": round(measured["raw_cpu_ms"], 3),
        "e2e_postgres_cpu_ms_per_event": round(measured["e2e_db_cpu_ms"], 3),
        # What this machine's cores could sustain, idle, at these CPU costs (Redis not counted).
        "e2e_cpu_bound_events_per_s": round(
            1000 * (os.cpu_count() or 1) / (measured["e2e_cpu_ms"] + measured["e2e_db_cpu_ms"])
        ),
        "e2e_runs": [round(run.per_second) for run in measured["e2e"]],
        "raw_celery_runs": [round(run.per_second) for run in measured["raw"]],
        # Runs the 60 s timeout cut short: their rate covers only what was done.
        "runs_cut_short": sum(not run.finished for run in measured["e2e"] + measured["raw"]),
        **_peer(env),
        "relay_cpu_ms_per_event": round(relay.relay_cpu_ms, 3),
        "relay_events": relay.events,
        "relay_messages": relay.messages,
        "e2e_events": E2E_EVENTS,
        "e2e_aggregates": E2E_AGGREGATES,
        "raw_celery_tasks": RAW_TASKS,
        "latency_events": len(latencies),
        "latency_rate_per_s": LATENCY_RATE,
        "latency_max_ms": round(latencies[-1], 2),
        **machine,
        "load_avg_at_end": round(os.getloadavg()[0], 2),
        **{f"{k}_at_start": v for k, v in before.items()},
        **{f"{k}_at_end": v for k, v in scenarios.round_trips_ms().items()},
        "seconds": round(time.monotonic() - began),
    }
    _print_table(result)
    _print_peer_table(result)
    print(json.dumps(result))


def _peer(env: dict[str, str]) -> dict[str, object]:
    from bench.peer_run import side_by_side

    return side_by_side(env, PEER_SIZES)


def _print_and_dump(result: dict[str, object], began: float, machine: dict[str, object]) -> None:
    result = {**result, **machine, "load_avg_at_end": round(os.getloadavg()[0], 2),
              "seconds": round(time.monotonic() - began)}  # fmt: skip
    _print_peer_table(result)
    print(json.dumps(result))


def _print_peer_table(r: dict[str, object]) -> None:
    """ShopFlow beside procrastinate, and the issue's goals for the ratios."""
    print(f"{'peer-shaped run':32} {'ShopFlow':>10} {'procrast.':>10}  ratio (goal)")
    rows = [
        ("e2e events/s", "e2e_events_per_s", "peer_e2e_ratio", ">= 1.5"),
        ("latency p50 (ms) at rate", "latency_p50_ms", "peer_latency_p50_ratio", "<= 1"),
        ("latency p99 (ms) at rate", "latency_p99_ms", "peer_latency_p99_ratio", "<= 2"),
        ("producer commits/s", "producer_commits_per_s", "producer_ratio", ">= 0.8"),
        ("worker CPU ms per event", "worker_cpu_ms_per_event", None, ""),
        ("PostgreSQL CPU ms per event", "postgres_cpu_ms_per_event", None, ""),
    ]
    for name, key, ratio, goal in rows:
        ours, theirs = r[f"peer_shopflow_{key}"], r[f"peer_procrastinate_{key}"]
        note = f"x{r[ratio]} ({goal})" if ratio else ""
        print(f"{name:32} {ours!s:>10} {theirs!s:>10}  {note}")


def _print_table(r: dict[str, object]) -> None:
    rows = [
        ("relay alone (events/s)", r["relay_events_per_s"], ">= 5000"),
        ("  textbook polling relay", r["polling_events_per_s"], f"x{r['ratio_vs_polling']}"),
        ("  one task per event relay", r["naive_events_per_s"], f"x{r['ratio_vs_naive']}"),
        ("end to end (events/s)", r["e2e_events_per_s"], ">= 2000"),
        (
            "  bare no-op Celery tasks/s",
            r["raw_celery_tasks_per_s"],
            f"x{r['ratio_vs_raw_celery']}",
        ),
        ("latency p50 (ms)", r["latency_p50_ms"], "<= 10"),
        ("latency p99 (ms)", r["latency_p99_ms"], "<= 50"),
    ]
    for name, value, note in rows:
        print(f"{name:32} {value!s:>10}  {note}")


if __name__ == "__main__":
    main()
