"""Reads of the orders context."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import Prefetch, QuerySet

from orders.models import Order, OrderItem, TimelineEntry


def order_list(*, user: Any, status: str | None = None) -> QuerySet[Order]:
    """Orders a user may see, newest first: their own, or all for staff."""
    orders = Order.objects.select_related("customer").prefetch_related(
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
