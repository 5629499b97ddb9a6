"""Celery tasks of payments: thin wrappers over `payments.services`."""

from celery import shared_task

from payments.services import payments_late_charges_refund


@shared_task(name="payments.refund_late_charges", ignore_result=True)
def refund_late_charges() -> int:
    """Refund charges that landed after their payment was closed (beat)."""
    return payments_late_charges_refund()
