"""Celery tasks of the outbox: thin wrappers over the relay and the delivery code."""

from celery import shared_task

from outbox import delivery, relay, services
from shopflow.local_work import local_work


@shared_task(name="outbox.drain_outbox", ignore_result=True)
def drain_outbox() -> int:
    """Claim due deliveries and publish them to the handler queues."""
    return relay.drain()


@shared_task(name="outbox.deliver", ignore_result=True)
def deliver(lease_id: str, delivery_ids: list[int]) -> None:
    """Run the handlers of one claimed batch of deliveries, then what they hand on here."""
    with local_work():
        delivery.deliveries_process(lease_id, delivery_ids)


@shared_task(name="outbox.purge_outbox", ignore_result=True)
def purge_outbox() -> int:
    """Delete processed events and inbox records past the retention period."""
    return services.outbox_purge(older_than_days=None)
