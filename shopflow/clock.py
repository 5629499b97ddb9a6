"""One clock for every due time, lease and expiry: the database's.

Hosts' clocks drift; a worker ahead by a lease would take live work from
another, and a web host ahead would make its events wait. Every instant that
another process compares against is read from the database (`Now()` in a
query, or `db_now()` where no query is at hand), never from `timezone.now()`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import connection


def db_now() -> datetime:
    """The database's current time (its statement timestamp), timezone-aware."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT statement_timestamp()")
            return cursor.fetchone()[0]
        cursor.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
        return datetime.fromisoformat(cursor.fetchone()[0]).replace(tzinfo=UTC)
