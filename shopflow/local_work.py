"""Work a Celery task hands on to the worker running it, instead of through the broker.

A delivery a worker's transaction leased at commit, or a saga move it asked
for, would travel to a queue this very worker consumes: a broker round trip
and Celery's receiving cost (~2-3 ms of CPU a message here) to reach a process
that is already here. Inside `local_work()`, such work is kept in this process
and run right after the task's body, in order, within WORKER_LOCAL_WORK_SECONDS;
what is left then, or what this worker does not consume, is published as
before (each job's `publish`).

Nothing is lost if the process dies first: what a job would have done is
already recorded in PostgreSQL before it is kept (a leased delivery, a saga's
`wake_at`), and the outbox's lease or the saga watchdog brings it back, as
for a message the broker lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from celery.signals import celeryd_after_setup
from django.conf import settings

logger = logging.getLogger("shopflow.local_work")

# The queues this worker consumes (its -Q), known once it has started: None elsewhere.
_consumed: frozenset[str] | None = None


@celeryd_after_setup.connect
def _queues_seen(sender: object = None, instance: object = None, **kwargs: object) -> None:
    """Note the worker's queues before its pool processes fork (they inherit them)."""
    global _consumed
    _consumed = frozenset(instance.app.amqp.queues.consume_from)  # type: ignore[attr-defined]


def worker_queues_set(queues: frozenset[str] | None) -> None:
    """Set the queues this process consumes (tests; a worker sets them when it starts)."""
    global _consumed
    _consumed = queues


@dataclass(frozen=True)
class _Job:
    run: Callable[[], object]
    publish: Callable[[], object]  # the broker's way, when the job is not run here


class _Scope(threading.local):
    jobs: deque[_Job] | None = None


_scope = _Scope()


def worker_consumes(queue: str) -> bool:
    """Whether this process takes `queue`'s messages (True in a process that is no worker)."""
    return _consumed is None or queue in _consumed


def local_work_open() -> bool:
    """Whether this thread runs a task body inside `local_work()`."""
    return _scope.jobs is not None


def task_queue(task_name: str) -> str:
    """The queue `task_name` is routed to (CELERY_TASK_ROUTES, else the default queue)."""
    route = settings.CELERY_TASK_ROUTES.get(task_name, {})
    return route.get("queue", settings.CELERY_TASK_DEFAULT_QUEUE)


def keep_local(queue: str, run: Callable[[], object], publish: Callable[[], object]) -> None:
    """Run `run` in this worker after the current task's body, or `publish` it.

    Published at once outside `local_work()`, in a process that is no worker,
    when local work is off, or when this worker does not consume `queue`.
    """
    jobs = _scope.jobs
    if (
        jobs is None
        or not settings.WORKER_LOCAL_WORK
        or _consumed is None
        or queue not in _consumed
    ):
        publish()
        return
    jobs.append(_Job(run, publish))


@contextmanager
def local_work() -> Iterator[None]:
    """Keep the work the body hands on (`keep_local`) and run it after the body, in order.

    Nested scopes (a kept job that opens its own) add to the outermost one.
    """
    if _scope.jobs is not None:
        yield
        return
    jobs: deque[_Job] = deque()
    _scope.jobs = jobs
    try:
        yield
        _run_kept(jobs)
    finally:
        _scope.jobs = None
        _publish_all(jobs)  # what the budget or an error left


def _run_kept(jobs: deque[_Job]) -> None:
    """Run kept jobs (and those they keep) until none is left or the budget is spent."""
    deadline = time.monotonic() + settings.WORKER_LOCAL_WORK_SECONDS
    while jobs and time.monotonic() < deadline:
        job = jobs.popleft()
        try:
            job.run()
        except Exception:
            logger.warning("local %r failed; publishing it instead", job.run, exc_info=True)
            _publish(job)


def _publish_all(jobs: deque[_Job]) -> None:
    while jobs:
        _publish(jobs.popleft())


def _publish(job: _Job) -> None:
    try:
        job.publish()
    except Exception:  # its lease or the saga watchdog brings it back
        logger.warning("publishing %r failed; left to its lease", job.run, exc_info=True)
