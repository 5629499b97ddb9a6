"""The benchmark's own database and broker keys: created, seeded and cleaned up here.

`make bench` must work on a fresh machine without touching anyone else's data,
so the benchmark runs in a database of its own, `<name>_bench` next to the one
DATABASE_URL names, created and migrated when missing.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

# The broker lists the benchmark fills; only these are deleted, never the whole db.
QUEUES = ("outbox", "events", "saga", "notifications")


def bench_database_url(database_url: str) -> str:
    """The URL of the benchmark's own database: `<name>_bench` on the same server."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/") or "shopflow"
    return urlunsplit(parts._replace(path=f"/{name}_bench"))


DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/shopflow"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/15"


def bench_urls() -> tuple[str, str, str]:
    """The benchmark's own database (made if missing), its broker and its Redis URLs."""
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    broker_url = os.environ.get("CELERY_BROKER_URL") or DEFAULT_BROKER_URL
    if not database_url.startswith(("postgres://", "postgresql://")):
        sys.exit("bench: DATABASE_URL must be a PostgreSQL URL")
    if not broker_url.startswith("redis://"):
        sys.exit("bench: CELERY_BROKER_URL must be a Redis URL")
    url = bench_database_url(database_url)
    created = database_ensure(url)
    print(f"database {url.rsplit('/', 1)[-1]} ({'created' if created else 'exists'})")
    return url, broker_url, os.environ.get("REDIS_URL") or broker_url


def database_ensure(database_url: str) -> bool:
    """Create the database `database_url` names unless it exists; True if created."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return True


def outbox_reset() -> None:
    """Empty the outbox tables and refresh their statistics."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE outbox_delivery, outbox_outboxevent")


def outbox_analyze() -> None:
    """Refresh planner statistics, as autovacuum would on a live queue table."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outbox_outboxevent")
        cursor.execute("ANALYZE outbox_delivery")


def events_seed(count: int, *, aggregates: int, first_seq: int = 0) -> None:
    """Write `count` BenchPinged events and their deliveries, as `events_record` would.

    One INSERT … SELECT instead of `events_record`, whose bulk_create costs
    ~0.4 ms per event in Python: set-up time, not what is measured. Event `seq`
    goes to aggregate `a<seq % aggregates>`, so ids follow seq within an aggregate.
    """
    from django.db import connection

    from bench.events import BenchPinged
    from outbox.registry import handlers_for

    handlers = [h.name for h in handlers_for(BenchPinged.name)]
    with connection.cursor() as cursor:
        cursor.execute(_SEED_SQL, {
            "type": BenchPinged.name, "aggregate_type": BenchPinged.aggregate_type,
            "first": first_seq, "last": first_seq + count - 1, "aggregates": aggregates,
            "handlers": handlers,
        })  # fmt: skip


_SEED_SQL = """
WITH source AS (
    SELECT g AS seq, 'a' || (g %% %(aggregates)s::bigint) AS aggregate,
           gen_random_uuid() AS event_id
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
), events AS (
    INSERT INTO outbox_outboxevent
        (event_id, type, version, aggregate_type, aggregate_id, payload, headers,
         occurred_at, created_at)
    SELECT event_id, %(type)s, 1, %(aggregate_type)s, aggregate,
           jsonb_build_object('aggregate', aggregate, 'seq', seq, 'traced', false),
           jsonb_build_object('correlation_id', event_id::text, 'causation_id', ''),
           now(), now()
    FROM source ORDER BY seq
    RETURNING id, aggregate_type, aggregate_id
)
INSERT INTO outbox_delivery
    (event_id, handler, aggregate_key, status, attempts, next_attempt_at,
     last_error, last_traceback, created_at)
SELECT events.id, handler, events.aggregate_type || ':' || events.aggregate_id, 'pending', 0,
       now(), '', '', now()
FROM events CROSS JOIN unnest(%(handlers)s::text[]) AS handler
ORDER BY events.id, handler
"""


def broker_reset(client) -> None:
    """Drop the messages the benchmark left in its queues, and its own keys."""
    client.delete(*QUEUES)
    bench_keys = list(client.scan_iter("bench:*"))
    if bench_keys:
        client.delete(*bench_keys)
