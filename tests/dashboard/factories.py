"""Rows for the dashboard's known dataset: deliveries done at chosen times, sagas, orders."""

from __future__ import annotations

from datetime import datetime, timedelta

import factory
from django.db import transaction

from orders.fulfilment import FULFILMENT
from orders.models import Order
from outbox.models import Delivery, OutboxEvent
from outbox.services import events_record
from sagas.models import Saga
from tests.notifications.factories import OrderFactory
from tests.probe.events import ProbeHappened


class SagaFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Saga

    definition = FULFILMENT
    key = factory.Sequence(lambda n: f"order-{n}")


def probe_recorded(aggregate: str, seq: int = 1) -> OutboxEvent:
    """A probe event with its two deliveries (probe.record, probe.projection), both pending."""
    with transaction.atomic():
        (row,) = events_record([ProbeHappened(aggregate=aggregate, seq=seq)])
    return row


def deliveries_done(event: OutboxEvent, at: datetime, handler: str | None = None) -> None:
    """Mark the event's deliveries (or only `handler`'s) handled at `at`."""
    deliveries = Delivery.objects.filter(event=event)
    if handler is not None:
        deliveries = deliveries.filter(handler=handler)
    deliveries.update(status="done", done_at=at, attempts=1)


def delivery_dead(event: OutboxEvent, handler: str) -> Delivery:
    """Mark the event's delivery to `handler` dead after four failed attempts."""
    Delivery.objects.filter(event=event, handler=handler).update(
        status="dead", attempts=4, last_error="RuntimeError: probe failure"
    )
    return Delivery.objects.get(event=event, handler=handler)


def order_created(status: str, at: datetime) -> Order:
    """An order row in `status`, placed at `at` (no saga, no events)."""
    order = OrderFactory(status=status)
    Order.objects.filter(pk=order.pk).update(created_at=at)
    return order


def minutes_ago(now: datetime, minutes: float) -> datetime:
    return now - timedelta(minutes=minutes)
