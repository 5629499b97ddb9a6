"""Write the events a model collected to the outbox when the model is saved."""

from typing import Any

from django.db import connection
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from outbox.models import EventSource
from outbox.services import OutsideTransaction, events_record


@receiver(pre_save, dispatch_uid="outbox.refuse_events_outside_transaction")
def refuse_events_outside_transaction(sender: type, instance: Any, **kwargs: Any) -> None:
    """Refuse the save itself, so no change commits without its events."""
    pending = isinstance(instance, EventSource) and instance.has_pending_events()
    if pending and not connection.in_atomic_block:
        raise OutsideTransaction("domain events must be recorded inside transaction.atomic()")


@receiver(post_save, dispatch_uid="outbox.record_collected_events")
def record_collected_events(sender: type, instance: Any, **kwargs: Any) -> None:
    """Record what `instance` raised, in the transaction that saved it."""
    if isinstance(instance, EventSource):
        events_record(instance.collect_events())
