"""The outbox's one clock: the database's.

Due times, leases, backoffs and done times are compared across hosts (a web
host records, a worker claims, another worker handles), so they are all
computed by the database, never by a host's own clock: a web host two minutes
ahead would otherwise make its events undeliverable for two minutes, and a
relay a lease ahead would re-claim live leases. In PostgreSQL this is
`statement_timestamp()` (Django's `Now()`); on the embedded SQLite default the
database runs in this process, so its clock is this host's anyway.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache

from django.db import connection
from django.db.models import DateTimeField, Expression, ExpressionWrapper, Value
from django.db.models.functions import Now
from django.db.models.sql import Query


def db_now() -> Expression:
    """The database's current time, for ORM filters and updates."""
    return Now()


def db_now_plus(seconds: float) -> Expression:
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
