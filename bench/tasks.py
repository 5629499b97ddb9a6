"""The raw-Celery baseline: a bare no-op task that only counts itself."""

from functools import cache

import redis
from celery import shared_task
from django.conf import settings

# Counter of executed no-op tasks, so the benchmark knows when all have run.
NOOP_DONE_KEY = "bench:noop_done"


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@shared_task(name="bench.noop", ignore_result=True)
def noop() -> None:
    """Do nothing but count, the cheapest task that can be observed finishing."""
    _redis().incr(NOOP_DONE_KEY)
