"""Celery tasks of shipping: the sandbox carrier's own progress, for demos, and a repair."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from orders.models import InvalidTransition
from shipping.models import Shipment
from shipping.services import shipment_advance, shipments_of_ended_orders_cancel


@shared_task(name="shipping.sandbox_advance", ignore_result=True)
def sandbox_advance() -> int:
    """Ship and deliver sandbox shipments after their delays, as the carrier's webhook would."""
    if not settings.SHIPPING_SANDBOX_AUTO_ADVANCE:
        return 0
    now = timezone.now()
    due = [
        (Shipment.Status.SCHEDULED, Shipment.Status.SHIPPED, settings.SHIPPING_SANDBOX_SHIP_AFTER),
        (
            Shipment.Status.SHIPPED,
            Shipment.Status.DELIVERED,
            settings.SHIPPING_SANDBOX_DELIVER_AFTER,
        ),
    ]
    moved = 0
    for current, target, after in due:
        old_enough = now - timedelta(seconds=after)
        for tracking in Shipment.objects.filter(status=current, updated_at__lte=old_enough)[:200]:
            try:
                shipment_advance(tracking_number=tracking.tracking_number, status=target)
                moved += 1
            except InvalidTransition:  # cancelled or moved meanwhile
                continue
    return moved


@shared_task(name="shipping.cancel_ended_orders_shipments", ignore_result=True)
def cancel_ended_orders_shipments() -> int:
    """Call off scheduled shipments that cancelled or failed orders still hold (beat)."""
    return shipments_of_ended_orders_cancel()
