"""Keep each order's timeline in step with the events recorded about it."""

from typing import Any

from django.dispatch import receiver

from orders.models import TimelineEntry
from outbox.models import OutboxEvent
from outbox.services import events_recorded


@receiver(events_recorded, dispatch_uid="orders.timeline_from_events")
def timeline_from_events(sender: type, rows: list[OutboxEvent], **kwargs: Any) -> None:
    """Every event whose payload names an `order_id` belongs on that order's timeline."""
    TimelineEntry.objects.bulk_create(
        TimelineEntry(
            order_id=row.payload["order_id"],
            event_id=row.event_id,
            type=row.type,
            occurred_at=row.occurred_at,
            data=row.payload,
        )
        for row in rows
        if "order_id" in row.payload
    )
