"""Count SQL statements and Celery tasks in every process, for bench/saga.py only.

Installed by `bench.saga_settings` (never by the production settings). Each
process counts in memory: every statement Django sends (through an execute
wrapper on each new connection, so savepoints count too; BEGIN and COMMIT are
not statements Django sends), and in the worker each task by name with the
statements it ran. The counts are added to one Redis hash (`COUNTS_KEY`),
fields `sql:<process kind>`, `task:<name>`, `sql:task:<name>`, `cpu_us:task:<name>`
(the CPU the task's body took, in microseconds; what the worker spends outside
them is Celery's own) and `cpu_us:handler:<name>` / `sql:handler:<name>` (each
outbox handler's own call, inside its delivery): by the web
after each request, by a worker process at most every FLUSH_SECONDS and when
it exits. PostgreSQL here has no pg_stat_statements, hence the wrapper.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from functools import cache
from typing import Any

COUNTS_KEY = "bench:counts"
FLUSH_SECONDS = 0.2

_counts: Counter[str] = Counter()
_lock = threading.Lock()
_state = {"kind": "web", "flushed": 0.0, "task_sql": 0, "task_cpu": 0.0}


@cache
def _redis() -> Any:
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.REDIS_URL)


def _count_statement(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    with _lock:
        _counts[f"sql:{_state['kind']}"] += 1
    return execute(sql, params, many, context)


def flush(*, force: bool = False) -> None:
    """Add this process's counts to the shared hash (throttled unless `force`)."""
    now = time.monotonic()
    if not force and now - _state["flushed"] < FLUSH_SECONDS:
        return
    with _lock:
        pending = dict(_counts)
        _counts.clear()
        _state["flushed"] = now
    if pending:
        pipe = _redis().pipeline(transaction=False)
        for name, value in pending.items():
            pipe.hincrby(COUNTS_KEY, name, value)
        pipe.execute()


def read() -> dict[str, int]:
    """The shared counts so far."""
    return {k.decode(): int(v) for k, v in _redis().hgetall(COUNTS_KEY).items()}


def reset() -> None:
    _redis().delete(COUNTS_KEY)


def install() -> None:
    """Wrap every new connection's statements; count tasks and requests."""
    from celery.signals import (
        task_postrun,
        task_prerun,
        worker_process_init,
        worker_process_shutdown,
    )
    from django.core.signals import request_finished
    from django.db.backends.signals import connection_created

    def wrap(sender: Any, connection: Any, **kwargs: Any) -> None:
        if _count_statement not in connection.execute_wrappers:
            connection.execute_wrappers.append(_count_statement)

    def worker_started(**kwargs: Any) -> None:
        _state["kind"] = "worker"

    def task_started(task: Any = None, **kwargs: Any) -> None:
        _state["task_sql"] = _counts[f"sql:{_state['kind']}"]
        _state["task_cpu"] = time.process_time()

    def task_finished(task: Any = None, **kwargs: Any) -> None:
        name = getattr(task, "name", "?")
        with _lock:
            _counts[f"task:{name}"] += 1
            _counts[f"sql:task:{name}"] += _counts[f"sql:{_state['kind']}"] - _state["task_sql"]
            _counts[f"cpu_us:task:{name}"] += round(
                (time.process_time() - _state["task_cpu"]) * 1e6
            )
        flush()

    _wrap_handlers()
    connection_created.connect(wrap, weak=False, dispatch_uid="bench.counting.wrap")
    worker_process_init.connect(worker_started, weak=False)
    task_prerun.connect(task_started, weak=False)
    task_postrun.connect(task_finished, weak=False)
    worker_process_shutdown.connect(lambda **kw: flush(force=True), weak=False)
    request_finished.connect(lambda **kw: flush(force=True), weak=False)
    if os.environ.get("BENCH_PROCESS_KIND"):
        _state["kind"] = os.environ["BENCH_PROCESS_KIND"]


def _wrap_handlers() -> None:
    """Count each outbox handler call's CPU and statements, by handler name."""
    from outbox.registry import Handler

    plain = Handler.__call__

    def counted(self: Handler, event: Any, context: Any) -> None:
        sql, cpu = _counts[f"sql:{_state['kind']}"], time.process_time()
        try:
            plain(self, event, context)
        finally:
            with _lock:
                _counts[f"sql:handler:{self.name}"] += _counts[f"sql:{_state['kind']}"] - sql
                _counts[f"cpu_us:handler:{self.name}"] += round((time.process_time() - cpu) * 1e6)

    Handler.__call__ = counted  # type: ignore[method-assign]
