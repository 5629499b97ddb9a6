"""Celery tasks of the orders context."""

from celery import shared_task

from orders.idempotency import idempotency_keys_purge


@shared_task(name="orders.purge_idempotency_keys", ignore_result=True)
def purge_idempotency_keys() -> int:
    """Forget Idempotency-Keys older than their retention (IDEMPOTENCY_KEY_TTL_HOURS)."""
    return idempotency_keys_purge()
