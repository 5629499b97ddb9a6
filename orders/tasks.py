"""Celery tasks of the orders context."""

from celery import shared_task

from orders.fulfilment import late_bookings_call_off
from orders.idempotency import idempotency_keys_purge


@shared_task(name="orders.purge_idempotency_keys", ignore_result=True)
def purge_idempotency_keys() -> int:
    """Forget Idempotency-Keys older than their retention (IDEMPOTENCY_KEY_TTL_HOURS)."""
    return idempotency_keys_purge()


@shared_task(name="orders.call_off_late_bookings", ignore_result=True)
def call_off_late_bookings() -> int:
    """Call off bookings a stale attempt made after its saga was undone, that nobody recorded."""
    return late_bookings_call_off()
