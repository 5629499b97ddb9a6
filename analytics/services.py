"""Writes of the analytics projection."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from analytics.models import DailySales

COUNTERS = ("orders_placed", "orders_confirmed", "orders_cancelled", "orders_failed")
AMOUNTS = ("gross_revenue", "refunds")
_TABLE = DailySales._meta.db_table
_DATE = DailySales._meta.get_field("date")


def _add_sql(field: str) -> str:
    """One figure of one day raised by %s, the day's row created at it when missing.

    INSERT … ON CONFLICT DO UPDATE (PostgreSQL, SQLite ≥ 3.24): a racing first
    event of the day waits on the primary key and then adds to the row the
    other committed, so no IntegrityError can abort the transaction, and no
    savepoint is needed to survive one. That keeps it right when several
    events are handled in one transaction.
    """
    figures = COUNTERS + AMOUNTS
    columns = ", ".join(f'"{name}"' for name in figures)
    values = ", ".join("%s" if name == field else "0" for name in figures)
    return (
        f'INSERT INTO "{_TABLE}" ("date", {columns}) VALUES (%s, {values}) '
        f'ON CONFLICT ("date") DO UPDATE SET "{field}" = "{_TABLE}"."{field}" + EXCLUDED."{field}"'
    )


_ADD_SQL = {field: _add_sql(field) for field in COUNTERS + AMOUNTS}


def daily_sales_add(*, day: datetime.date, field: str, amount: int | Decimal = 1) -> None:
    """Add `amount` to one figure of one day, creating the day's row if needed: one statement."""
    try:
        sql = _ADD_SQL[field]
    except KeyError:
        raise ValueError(f"unknown daily sales figure {field!r}") from None
    with connection.cursor() as cursor:
        cursor.execute(sql, [_DATE.get_db_prep_value(day, connection), amount])


def daily_sales_reset() -> int:
    """Empty the projection (before a rebuild); returns the number of days removed."""
    deleted, _ = DailySales.objects.all().delete()
    return deleted


def _projection_lock() -> None:
    """Wait for every delivery that has written the projection to commit; keep out new ones.

    Without it, a delivery that has just inserted the first row of a day and
    not yet committed survives the reset (the DELETE does not see the row),
    commits, and is then found done and replayed: its event counts twice.
    Every write of `daily_sales_add` takes ROW EXCLUSIVE on the table, which
    EXCLUSIVE blocks (plain reads go on). A delivery that flipped its row to
    done but has not written yet is still pending to the replay, so it counts
    once, after the rebuild commits. SQLite's IMMEDIATE transactions already
    run one writer at a time.

    The same holds for a transaction that handles several events (a batch): it
    holds ROW EXCLUSIVE from its first write until it commits, so the rebuild
    either waits for the whole batch, or locks before the batch's first write,
    and then every delivery of the batch is still pending to the replay and
    counts once, after the rebuild.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {DailySales._meta.db_table} IN EXCLUSIVE MODE")


def analytics_rebuild(*, progress: Any = None) -> Any:
    """Empty the projection and replay its events to its (replayable) handler."""
    from analytics.handlers import HANDLER_NAME
    from outbox.registry import get_handler
    from outbox.replay import events_replay
    from outbox.selectors import EventSelection

    handler = get_handler(HANDLER_NAME)
    with transaction.atomic():
        _projection_lock()
        daily_sales_reset()
        return events_replay(
            EventSelection(types=tuple(sorted(handler.event_types))),
            handler=HANDLER_NAME,
            reprocess=True,
            force=True,
            progress=progress,
        )


def analytics_rebuild_pending() -> int:
    """Deliveries to the projection not yet handled (how far a rebuild has to go)."""
    from analytics.handlers import HANDLER_NAME
    from outbox.models import Delivery

    return (
        Delivery.objects.filter(handler=HANDLER_NAME).exclude(status=Delivery.Status.DONE).count()
    )
