"""The crash-safe peer ShopFlow's event path is measured against: procrastinate 3.10.

A PostgreSQL job queue: the job row is inserted in the producer's transaction
(through Django's connection, as a Django shop defers), a trigger NOTIFYs at
commit, and its worker (`procrastinate worker --concurrency 2`) LISTENs,
fetches the job, runs it and marks it succeeded. Its task is as small as
ShopFlow's `bench.noop` handler: traced jobs leave their start time in Redis.

The worker process imports only this module (no Django): `bench.peer.app`.
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager
from functools import cache

import redis
from procrastinate import App, PsycopgConnector

QUEUE = "bench"
# Hash of job seq -> wall-clock second the task started (latency run only).
STARTED_KEY = "bench:peer_started"

app = App(connector=PsycopgConnector(conninfo=os.environ.get("DATABASE_URL", "")))


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


@app.task(name="bench.peer_noop", queue=QUEUE)
def peer_noop(seq: int, traced: bool = False) -> None:
    """A no-op job; traced jobs leave their start time behind."""
    if traced:
        _redis().hset(STARTED_KEY, str(seq), repr(time.time()))


def schema_ensure() -> None:
    """Install procrastinate's tables in the benchmark's database, once."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        if cursor.fetchone()[0]:
            return
    with _producer() as producer:
        producer.schema_manager.apply_schema()


def _producer() -> AbstractContextManager[App]:
    """This app, deferring through Django's connection: in the caller's transaction."""
    from procrastinate.contrib.django.django_connector import DjangoConnector

    return app.replace_connector(DjangoConnector())


def jobs_reset() -> None:
    """Empty procrastinate's job tables."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE procrastinate_events, procrastinate_jobs CASCADE")


def finished_count(sql: str) -> tuple[int, float | None]:
    """(how many, the epoch second of the last) from a `SELECT count(*), extract(epoch …)`."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql)
        count, last = cursor.fetchone()
    return count, None if last is None else float(last)


def jobs_finished() -> tuple[int, float | None]:
    """(jobs succeeded, the epoch second the last one finished)."""
    return finished_count(
        "SELECT count(*), extract(epoch FROM max(at)) FROM procrastinate_events"
        " WHERE type = 'succeeded'"
    )
