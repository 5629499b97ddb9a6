"""Reads of the orders context."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery

from orders.models import Order, OrderItem, Status, TimelineEntry
from payments.models import Payment
from shipping.models import Shipment

# The payment's and the shipment's state, read alongside each order in one query.
FULFILMENT_FIELDS = ("payment_status", "payment_amount", "shipment_status", "tracking_number")


def with_fulfilment(orders: QuerySet[Order]) -> QuerySet[Order]:
    """Annotate orders with their payment's and shipment's state (FULFILMENT_FIELDS)."""
    payment = Payment.objects.filter(order_id=OuterRef("pk"))
    shipment = Shipment.objects.filter(order_id=OuterRef("pk"))
    return orders.annotate(
        payment_status=Subquery(payment.values("status")[:1]),
        payment_amount=Subquery(payment.values("amount")[:1]),
        shipment_status=Subquery(shipment.values("status")[:1]),
        tracking_number=Subquery(shipment.values("tracking_number")[:1]),
    )


def order_fulfilment(order: Order) -> dict[str, Any]:
    """The order's FULFILMENT_FIELDS, from its annotations or, without them, one query.

    The queried state is kept on the order like annotations, so the payment and
    the shipment of one serialized order cost one query between them.
    """
    if not all(hasattr(order, name) for name in FULFILMENT_FIELDS):
        state = with_fulfilment(Order.objects.filter(pk=order.pk)).values(*FULFILMENT_FIELDS).get()
        for name, value in state.items():
            setattr(order, name, value)
    return {name: getattr(order, name) for name in FULFILMENT_FIELDS}


def order_list(*, user: Any, status: str | None = None) -> QuerySet[Order]:
    """Orders a user may see, newest first: their own, or all for staff."""
    orders = with_fulfilment(Order.objects.select_related("customer")).prefetch_related(
        Prefetch("items", queryset=OrderItem.objects.order_by("id"))
    )
    if not user.is_staff:
        orders = orders.filter(customer=user)
    if status:
        orders = orders.filter(status=status)
    return orders.order_by("-created_at", "-id")


def order_get(*, user: Any, order_id: UUID) -> Order | None:
    """The order if the user may see it (owner or staff), else None."""
    return order_list(user=user).filter(pk=order_id).first()


def order_timeline(*, order_id: UUID) -> QuerySet[TimelineEntry]:
    """Every domain event about the order, oldest first."""
    return TimelineEntry.objects.filter(order_id=order_id).order_by("occurred_at", "id")


def order_status_counts(*, since: datetime) -> dict[str, int]:
    """Orders placed at or after `since`, by their status now (every status, zeros included)."""
    rows = (
        Order.objects.filter(created_at__gte=since)
        .values_list("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = dict(rows)
    return {status: counts.get(status, 0) for status in Status.values}
