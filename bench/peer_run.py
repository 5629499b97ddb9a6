"""The peer-shaped run: ShopFlow's event path and procrastinate's, side by side.

Both systems get the same producer: one transaction per event that inserts a
business row and records the event (ShopFlow: `events_record`; procrastinate:
the job deferred through Django's connection), and the same minimal consumer.
ShopFlow runs as the Procfile does (a prefork worker with concurrency 2 on
every queue, and beat); procrastinate's worker runs with concurrency 2. Each
round starts each system's processes afresh, alternating which goes first.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from django.db import connection, transaction

from bench import peer
from bench.cpu import CpuMeter, _stat
from bench.events import BenchPinged
from bench.handlers import STARTED_KEY
from bench.scenarios import _until, broker, clean_slate, percentile
from outbox.services import events_record

BUSINESS_TABLE = "bench_business_row"
# Seconds a run may take to handle its events; a run cut short reports what it did.
TIMEOUT = float(os.environ.get("BENCH_PEER_TIMEOUT", 90))


def business_table_ensure() -> None:
    """The producer's business row: what a real transaction writes beside its event."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {BUSINESS_TABLE} (id bigserial PRIMARY KEY,"
            " seq integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )


def _business_row(seq: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {BUSINESS_TABLE} (seq) VALUES (%s) RETURNING id", [seq])
        return cursor.fetchone()[0]


@dataclass
class System:
    """How the benchmark writes to, starts and reads one system."""

    name: str
    record: Callable[[int, bool], None]  # inside the producer's transaction
    finished: Callable[[], tuple[int, float | None]]  # (handled, epoch of the last)
    started_key: str
    producing: Callable[[], AbstractContextManager[object]] = nullcontext


def _shopflow_record(seq: int, traced: bool) -> None:
    row = _business_row(seq)
    events_record([BenchPinged(aggregate=f"r{row}", seq=seq, traced=traced)])


def _shopflow_finished() -> tuple[int, float | None]:
    return peer.finished_count(
        "SELECT count(*), extract(epoch FROM max(done_at)) FROM outbox_delivery"
        " WHERE status = 'done'"
    )


def _peer_record(seq: int, traced: bool) -> None:
    _business_row(seq)
    peer.peer_noop.defer(seq=seq, traced=traced)


SHOPFLOW = System("shopflow", _shopflow_record, _shopflow_finished, STARTED_KEY)
PROCRASTINATE = System(
    "procrastinate", _peer_record, peer.jobs_finished, peer.STARTED_KEY, peer._producer
)


def _reset() -> None:
    clean_slate()
    peer.jobs_reset()
    broker().delete(peer.STARTED_KEY)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {BUSINESS_TABLE}")


def _commit_one(system: System, seq: int, traced: bool, committed: dict[int, float]) -> None:
    with transaction.atomic():
        # Registered first, so it runs right after COMMIT, before any on-commit publish.
        transaction.on_commit(lambda: committed.__setitem__(seq, time.time()))
        system.record(seq, traced)


class _Meter(CpuMeter):
    """CpuMeter that also leaves out the producer's own backend (this thread's)."""

    def start(self) -> _Meter:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self._own = cursor.fetchone()[0]
        return super().start()  # type: ignore[return-value]

    def _sample_backends(self, *, new_from_zero: bool) -> None:
        from bench.cpu import _backend_pids

        for pid in _backend_pids():
            if pid == getattr(self, "_own", None) or (stat := _stat(pid)) is None:
                continue
            seen = self._backends.setdefault(pid, [0.0 if new_from_zero else stat[1], stat[1]])
            seen[1] = stat[1]


@dataclass
class Figures:
    e2e_per_s: list[float] = field(default_factory=list)
    producer_per_s: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=lambda: {"worker": 0.0, "postgres": 0.0})
    handled: int = 0
    cut_short: int = 0


def _e2e(system: System, events: int, worker_pids: list[int], figures: Figures) -> None:
    """One producer as fast as it goes while the consumers run; events/s to the last handled."""
    _reset()
    meter = _Meter(**{f"p{i}": pid for i, pid in enumerate(worker_pids)}).start()
    committed: dict[int, float] = {}
    began = time.time()
    with system.producing():
        for seq in range(events):
            _commit_one(system, seq, False, committed)
    produced = time.time() - began
    if not _until(lambda: system.finished()[0] >= events, timeout=TIMEOUT, interval=0.05):
        figures.cut_short += 1  # the rate then covers what was handled in time
    used = meter.stop()
    count, last = system.finished()
    figures.e2e_per_s.append(count / (last - began) if count else 0.0)
    figures.producer_per_s.append(events / produced)
    figures.cpu["worker"] += sum(v for k, v in used.items() if k != "postgres")
    figures.cpu["postgres"] += used["postgres"]
    figures.handled += count


def _latency(system: System, events: int, rate: float) -> list[float]:
    """One traced event per transaction at `rate`/s; commit-to-handler-start in ms."""
    _reset()
    committed: dict[int, float] = {}
    started = time.monotonic()
    with system.producing():
        for seq in range(events):
            pause = started + seq / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            _commit_one(system, seq, True, committed)
    client = broker()
    if not _until(lambda: client.hlen(system.started_key) >= events, TIMEOUT, interval=0.05):
        raise TimeoutError(f"{system.name}: latency events not all handled after {TIMEOUT} s")
    handled = {int(k): float(v) for k, v in client.hgetall(system.started_key).items()}
    return [(handled[seq] - committed[seq]) * 1000 for seq in committed]


def _processes_start(system: System, env: dict[str, str]) -> list:
    from bench.workers import beat_start, peer_worker_start, worker_start

    if system is SHOPFLOW:
        return [worker_start(env, name="outbox-peer-shopflow-worker"),
                beat_start(env, name="outbox-peer-shopflow-beat")]  # fmt: skip
    return [peer_worker_start(env)]


def _round(system: System, env: dict[str, str], sizes: dict[str, float], figures: Figures) -> None:
    processes = _processes_start(system, env)
    try:
        _latency(system, 50, sizes["rate"])  # warm the pool's connections and imports
        figures.latencies += _latency(system, int(sizes["latency_events"]), sizes["rate"])
        _e2e(system, int(sizes["events"]), [p.proc.pid for p in processes], figures)
    finally:
        for process in reversed(processes):
            process.stop()
        _reset()


def side_by_side(env: dict[str, str], sizes: dict[str, float]) -> dict[str, object]:
    """Both systems, `rounds` rounds each, alternating which goes first; the JSON keys."""
    business_table_ensure()
    peer.schema_ensure()
    figures = {SHOPFLOW.name: Figures(), PROCRASTINATE.name: Figures()}
    for number in range(int(sizes["rounds"])):
        order = (SHOPFLOW, PROCRASTINATE) if number % 2 == 0 else (PROCRASTINATE, SHOPFLOW)
        for system in order:
            _round(system, env, sizes, figures[system.name])
    return _summary(figures[SHOPFLOW.name], figures[PROCRASTINATE.name], sizes)


def _described(f: Figures) -> dict[str, object]:
    latencies = sorted(f.latencies)
    return {
        "e2e_events_per_s": round(statistics.median(f.e2e_per_s), 1),
        "e2e_runs": [round(v) for v in f.e2e_per_s],
        "latency_p50_ms": round(percentile(latencies, 0.50), 2),
        "latency_p99_ms": round(percentile(latencies, 0.99), 2),
        "producer_commits_per_s": round(statistics.median(f.producer_per_s), 1),
        "producer_runs": [round(v) for v in f.producer_per_s],
        "worker_cpu_ms_per_event": round(1000 * f.cpu["worker"] / f.handled, 3),
        "postgres_cpu_ms_per_event": round(1000 * f.cpu["postgres"] / f.handled, 3),
        "runs_cut_short": f.cut_short,
    }


def _summary(ours: Figures, theirs: Figures, sizes: dict[str, float]) -> dict[str, object]:
    mine, peer_figures = _described(ours), _described(theirs)

    def ratio(key: str) -> float:
        return round(mine[key] / peer_figures[key], 2)

    return {
        "peer_e2e_ratio": ratio("e2e_events_per_s"),
        "peer_latency_p50_ratio": ratio("latency_p50_ms"),
        "peer_latency_p99_ratio": ratio("latency_p99_ms"),
        "producer_ratio": ratio("producer_commits_per_s"),
        **{f"peer_shopflow_{k}": v for k, v in mine.items()},
        **{f"peer_procrastinate_{k}": v for k, v in peer_figures.items()},
        "peer_events": int(sizes["events"]),
        "peer_latency_events": int(sizes["latency_events"]) * int(sizes["rounds"]),
        "peer_latency_rate_per_s": sizes["rate"],
        "peer_rounds": int(sizes["rounds"]),
    }
