"""Writes of the analytics projection."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F

from analytics.models import DailySales

COUNTERS = ("orders_placed", "orders_confirmed", "orders_cancelled", "orders_failed")
AMOUNTS = ("gross_revenue", "refunds")


def daily_sales_add(*, day: datetime.date, field: str, amount: int | Decimal = 1) -> None:
    """Add `amount` to one figure of one day, creating the day's row if needed."""
    if field not in COUNTERS + AMOUNTS:
        raise ValueError(f"unknown daily sales figure {field!r}")
    if not DailySales.objects.filter(date=day).update(**{field: F(field) + amount}):
        try:
            with transaction.atomic():
                DailySales.objects.create(date=day, **{field: amount})
        except IntegrityError:  # another handler created the day first: add to it
            DailySales.objects.filter(date=day).update(**{field: F(field) + amount})


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
