"""factory_boy factories for orders in any state, with their payment and shipment.

They write rows directly (no events): the notification and analytics tests
need orders that already are shipped, cancelled or failed, without a saga.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import factory
from django.db import transaction

from inventory.models import Product
from orders.models import Order, OrderItem
from outbox.events import DomainEvent
from outbox.models import OutboxEvent
from outbox.services import events_record
from payments.models import Payment
from shipping.models import Shipment
from tests.orders.factories import ADDRESS, UserFactory


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    customer = factory.SubFactory(UserFactory)
    currency = "USD"
    total = Decimal("0.00")
    shipping_address = factory.LazyFunction(lambda: dict(ADDRESS))
    payment_token = "tok_visa"


class PaymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Payment

    amount = Decimal("0.00")
    currency = "USD"
    status = Payment.Status.CAPTURED
    token = "tok_visa"
    idempotency_key = factory.Sequence(lambda n: f"test-charge-{n}")
    provider_ref = factory.Sequence(lambda n: f"ch_test_{n}")


class ShipmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Shipment

    status = Shipment.Status.SCHEDULED
    tracking_number = factory.Sequence(lambda n: f"TRK{n:08d}")
    idempotency_key = factory.Sequence(lambda n: f"test-shipment-{n}")


def order_made(lines: dict[str, tuple[str, int, str]] | None = None, **fields: Any) -> Order:
    """An order with items, `lines` as {sku: (name, quantity, unit price)}; total = their sum."""
    lines = lines or {"MUG-1": ("Mug", 2, "9.95"), "TEA-1": ("Green tea", 1, "4.50")}
    order = OrderFactory(**fields)
    for sku, (name, quantity, price) in lines.items():
        product, _ = Product.objects.get_or_create(
            sku=sku, defaults={"name": name, "price": Decimal(price), "on_hand": 100}
        )
        OrderItem.objects.create(
            order=order, product=product, sku=sku, name=name, quantity=quantity,
            unit_price=Decimal(price),
        )  # fmt: skip
    order.total = sum((i.line_total for i in order.items.all()), Decimal("0.00"))
    order.save(update_fields=["total"])
    return order


def event_recorded(event: DomainEvent) -> OutboxEvent:
    """Record one domain event in a committed transaction of its own, as a service would."""
    with transaction.atomic():
        (row,) = events_record([event])
    return row
