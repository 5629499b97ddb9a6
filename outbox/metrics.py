"""Prometheus metrics the relay and the workers update, and their multiprocess bookkeeping.

Web, workers and beat are separate processes, so prometheus_client runs in
multiprocess mode: settings put PROMETHEUS_MULTIPROC_DIR in the environment
before anything imports prometheus_client, each process writes its samples to
its own files there (named by pid), and `scrape()` adds every file up. Gauges
read from the database (backlog, lag, dead letters) are collected at scrape
time in `outbox.views`.

The directory must not keep growing with the files of processes long gone
(every management command leaves a few). A scrape deletes the files of dead
processes that hold only zeros, which changes no total; a starting worker
deletes every dead process's files. Counters a dead process did move are kept
until then, so totals do not drop while the system runs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from celery.signals import worker_init, worker_process_shutdown
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

logger = logging.getLogger("shopflow.outbox.metrics")

DELIVERIES = Counter(
    "shopflow_outbox_deliveries_total",
    "Delivery outcomes by handler, event type and outcome (done, retry, dead).",
    ["handler", "event_type", "outcome"],
)
RELAY_BATCH_SECONDS = Histogram(
    "shopflow_outbox_relay_batch_seconds",
    "Time the relay takes to claim and publish one batch.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
RELAY_CLAIMED = Counter(
    "shopflow_outbox_relay_claimed_total",
    "Deliveries sent on: published by the relay, or run by the worker that leased them.",
)


def multiprocess_enabled() -> bool:
    """Whether this process writes its samples to the shared multiprocess directory."""
    return bool(getattr(prometheus_values.ValueClass, "_multiprocess", False))


if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and not multiprocess_enabled():
    # prometheus_client was imported before settings exported the directory: this
    # process's samples stay in memory and other processes' scrapes will miss them.
    logger.warning("prometheus_client imported before PROMETHEUS_MULTIPROC_DIR was set")


def scrape(*collectors: Collector) -> bytes:
    """Every process's samples plus `collectors`, in the Prometheus text format."""
    registry = CollectorRegistry()
    if multiprocess_enabled():
        multiprocess_dir_prune(only_zeros=True)
        MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    for collector in collectors:
        registry.register(collector)
    try:
        return generate_latest(registry)
    except FileNotFoundError:
        # A prune removed a dead process's file between the collector's listing and
        # its read; the next listing no longer has it.
        return generate_latest(registry)


def multiprocess_dir_prune(directory: str | Path | None = None, *, only_zeros: bool = False) -> int:
    """Delete the sample files of processes that no longer run; returns how many.

    `only_zeros` keeps every file holding a non-zero sample, so no total drops.
    """
    path = Path(directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR") or "")
    if not path.is_dir():
        return 0
    removed = 0
    for file in path.glob("*.db"):
        pid = _pid_of(file)
        if pid is None or _process_alive(pid) or (only_zeros and not _all_zeros(file)):
            continue
        file.unlink(missing_ok=True)
        removed += 1
    return removed


def _pid_of(file: Path) -> int | None:
    # counter_<pid>.db, histogram_<pid>.db, gauge_<mode>_<pid>.db
    tail = file.stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _all_zeros(file: Path) -> bool:
    try:
        samples = MmapedDict.read_all_values_from_file(str(file))
    except Exception:  # gone already, or not a sample file: leave it alone
        return False
    return all(value == 0 for _, value, _, _ in samples)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


@worker_init.connect(dispatch_uid="outbox.metrics.prune_on_worker_start")
def _prune_on_worker_start(**kwargs: object) -> None:
    """Forget the files of processes from earlier runs before this worker forks its pool."""
    if multiprocess_enabled():
        removed = multiprocess_dir_prune()
        logger.info("pruned %d metrics files of dead processes", removed)


@worker_process_shutdown.connect(dispatch_uid="outbox.metrics.mark_pool_process_dead")
def _mark_pool_process_dead(pid: int | None = None, **kwargs: object) -> None:
    """Drop a pool process's live-gauge files, as the multiprocess docs ask."""
    if multiprocess_enabled():
        mark_process_dead(pid or os.getpid())
