"""One clock for every due time, lease and expiry: the database's.

Instants are compared across hosts (a web host records an event, a worker
claims it, another handles it; a worker leases a saga step, the watchdog reads
the lease), so they are all computed by the database, never by a host's own
clock: a web host two minutes ahead would otherwise make its events wait two
minutes, and a worker a lease ahead would take live work from another. In
PostgreSQL this is `statement_timestamp()` (Django's `Now()`); on the embedded
SQLite default the database runs in this process, so its clock is this host's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache

from django.db import connection
from django.db.models import DateTimeField, Expression, ExpressionWrapper, Value
from django.db.models.functions import Now
from django.db.models.sql import Query


def db_now() -> datetime:
    """The database's current time, as a value, where no query is at hand to ask in."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {db_now_sql()}", [])  # params, so `%%` reads as `%`
        value = cursor.fetchone()[0]
    if isinstance(value, str):  # SQLite answers in text, in UTC
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


def db_later(seconds: float) -> Expression:
    """The database's current time plus `seconds`, for ORM filters and updates."""
    return ExpressionWrapper(
        Now() + Value(timedelta(seconds=seconds)), output_field=DateTimeField()
    )


@cache
def _now_sql(vendor: str) -> str:
    del vendor  # the cache key: one compiled form per database backend
    compiler = Query(None).get_compiler(connection=connection)
    sql, _ = compiler.compile(Now())
    return sql


def db_now_sql() -> str:
    """`Now()` as raw SQL for this connection's database (`%` already escaped for params)."""
    return _now_sql(connection.vendor)


def db_later_sql(seconds: float) -> tuple[str, tuple[object, ...]]:
    """`db_later(seconds)` as raw SQL and its parameters, for this connection's database."""
    return _later_sql(connection.vendor, seconds)


@cache
def _later_sql(vendor: str, seconds: float) -> tuple[str, tuple[object, ...]]:
    del vendor  # the cache key, with the seconds
    # Resolved first: only then does a backend pick its date arithmetic (SQLite's
    # django_format_dtdelta; unresolved, it added the microseconds to the year).
    query = Query(None)
    later = db_later(seconds).resolve_expression(query)
    sql, params = query.get_compiler(connection=connection).compile(later)
    return sql, tuple(params)
