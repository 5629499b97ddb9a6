"""Keep each order's timeline in step with the events recorded about it."""

import json
from typing import Any

from django.db import connection
from django.dispatch import receiver

from orders.models import TimelineEntry
from outbox.models import OutboxEvent
from outbox.services import events_recorded

_COLUMNS = ("order_id", "event_id", "type", "occurred_at", "data")
# PostgreSQL casts the text forms; Django's per-field conversion cost more than the INSERT.
_ROW = "(%s::uuid, %s::uuid, %s, %s, %s::jsonb)"


@receiver(events_recorded, dispatch_uid="orders.timeline_from_events")
def timeline_from_events(sender: type, rows: list[OutboxEvent], **kwargs: Any) -> None:
    """Every event whose payload names an `order_id` belongs on that order's timeline."""
    entries = [row for row in rows if "order_id" in row.payload]
    if not entries:
        return
    if connection.vendor != "postgresql":
        TimelineEntry.objects.bulk_create(
            TimelineEntry(order_id=row.payload["order_id"], event_id=row.event_id, type=row.type,
                          occurred_at=row.occurred_at, data=row.payload)
            for row in entries
        )  # fmt: skip
        return
    params: list[Any] = []
    for row in entries:
        params += [row.payload["order_id"], str(row.event_id), row.type, row.occurred_at,
                   json.dumps(row.payload)]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TimelineEntry._meta.db_table} ({', '.join(_COLUMNS)})"
            f" VALUES {', '.join([_ROW] * len(entries))}",
            params,
        )
