"""The benchmark's handler: does nothing, or records when it started."""

import os
import time
from functools import cache

import redis
from django.conf import settings

from bench.events import BenchPinged
from outbox.registry import EventContext, subscribe

# Hash of event seq -> wall-clock second the handler started (latency run only).
STARTED_KEY = "bench:handler_started"


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@subscribe(BenchPinged, name="bench.noop", batch=True)
def bench_noop(event: BenchPinged, context: EventContext) -> None:
    """A no-op consumer; traced events leave their start time behind."""
    if event.traced:
        _redis().hset(STARTED_KEY, str(event.seq), repr(time.time()))


if os.environ.get("BENCH_TRACE_PRERUN"):  # bench/path_latency.py: when each task starts
    from celery.signals import task_prerun

    @task_prerun.connect
    def _trace_prerun(task: object = None, args: tuple = (), **kwargs: object) -> None:
        if getattr(task, "name", "") == "outbox.deliver":
            now = repr(time.time())
            _redis().hset("bench:task_prerun", mapping=dict.fromkeys(map(str, args[1]), now))
