"""Keep each order's timeline in step with the events recorded about it."""

from typing import Any

from django.db import connection
from django.dispatch import receiver

from orders.models import TimelineEntry
from outbox.models import OutboxEvent
from outbox.services import events_recorded

_COLUMNS = ("order_id", "event_id", "type", "occurred_at", "data")
_FIELDS = [TimelineEntry._meta.get_field(name) for name in _COLUMNS]


@receiver(events_recorded, dispatch_uid="orders.timeline_from_events")
def timeline_from_events(sender: type, rows: list[OutboxEvent], **kwargs: Any) -> None:
    """Every event whose payload names an `order_id` belongs on that order's timeline."""
    entries = [
        (row.payload["order_id"], row.event_id, row.type, row.occurred_at, row.payload)
        for row in rows
        if "order_id" in row.payload
    ]
    if not entries:
        return
    if connection.vendor != "postgresql":
        TimelineEntry.objects.bulk_create(
            TimelineEntry(**dict(zip(_COLUMNS, e, strict=True))) for e in entries
        )
        return
    # One plain INSERT: bulk_create costs ~0.5 ms of Python for one row, and
    # nothing reads the new entries' ids.
    params = [
        f.get_db_prep_save(v, connection) for e in entries for f, v in zip(_FIELDS, e, strict=True)
    ]
    values = ", ".join(["(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"] * len(entries))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TimelineEntry._meta.db_table} ({', '.join(_COLUMNS)}) VALUES {values}",
            params,
        )
