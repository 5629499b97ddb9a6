"""Writes of the orders context: placing orders and moving them along their life."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction

from inventory.models import Product
from orders.events import OrderCreated, OrderLine
from orders.models import Order, OrderItem, Status


@dataclass(frozen=True)
class LineRequest:
    sku: str
    quantity: int


class UnavailableProducts(ValueError):
    """Lines name SKUs that do not exist or are not for sale."""

    def __init__(self, skus: Sequence[str]) -> None:
        self.skus = tuple(skus)
        super().__init__("unknown or inactive SKU: " + ", ".join(self.skus))


def order_place(
    *,
    customer: Any,
    lines: Sequence[LineRequest],
    payment_token: str,
    shipping_address: dict[str, str],
) -> Order:
    """Record a new pending order priced from the catalog; the saga does the rest."""
    skus = [ln.sku for ln in lines]
    if not lines or len(set(skus)) != len(skus) or any(ln.quantity <= 0 for ln in lines):
        raise ValueError("an order needs lines with distinct SKUs and positive quantities")
    products = {p.sku: p for p in Product.objects.filter(sku__in=[ln.sku for ln in lines])}
    missing = [ln.sku for ln in lines if ln.sku not in products or not products[ln.sku].active]
    if missing:
        raise UnavailableProducts(missing)
    total = sum((products[ln.sku].price * ln.quantity for ln in lines), Decimal("0.00"))
    # No savepoint when nested (the API's Idempotency-Key transaction): nothing
    # here is caught and retried inside the caller's transaction, and a
    # savepoint costs two round trips per placement.
    with transaction.atomic(savepoint=False):
        order = Order(
            customer=customer,
            currency=settings.SHOP_CURRENCY,
            total=total,
            shipping_address=shipping_address,
            payment_token=payment_token,
        )
        order.raise_event(_created_event(order, lines, products))
        order.save(force_insert=True)
        items = OrderItem.objects.bulk_create(
            OrderItem(
                order=order,
                product=products[ln.sku],
                sku=ln.sku,
                name=products[ln.sku].name,
                quantity=ln.quantity,
                unit_price=products[ln.sku].price,
            )
            for ln in lines
        )
    _keep_items(order, items)
    return order


def _keep_items(order: Order, items: list[OrderItem]) -> None:
    """Keep the written lines as `order.items.all()`, as prefetch_related would: no re-read."""
    cached = order.items.all()
    cached._result_cache, cached._prefetch_done = items, True
    order._prefetched_objects_cache = {"items": cached}


def _created_event(
    order: Order, lines: Sequence[LineRequest], products: dict[str, Product]
) -> OrderCreated:
    return OrderCreated(
        order_id=order.id,
        number=order.number,
        customer_id=order.customer.pk,
        total=order.total,
        currency=order.currency,
        lines=tuple(
            OrderLine(
                sku=ln.sku,
                name=products[ln.sku].name,
                quantity=ln.quantity,
                unit_price=products[ln.sku].price,
            )
            for ln in lines
        ),
    )


def _transition(order_id: UUID, change: Callable[[Order], None]) -> Order:
    """Apply a model transition to the locked order and save it with its event."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        change(order)
        order.save()
    return order


def order_cancel(*, order_id: UUID, reason: str = "") -> tuple[Order, bool]:
    """Cancel the order; returns it and whether this call cancelled it.

    Cancelling an already cancelled order changes nothing (and returns False);
    a shipped, delivered or failed order raises `InvalidTransition`.
    """
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.status == Status.CANCELLED:
            return order, False
        order.cancel(reason)
        order.save()
    return order, True


def order_confirm(*, order_id: UUID) -> Order:
    """Mark the order confirmed (the fulfilment saga succeeded)."""
    return _transition(order_id, lambda order: order.confirm())


def order_fail(*, order_id: UUID, reason: str) -> Order:
    """Mark the order failed with a contract `failure_reason`."""
    return _transition(order_id, lambda order: order.fail(reason))


def order_mark_shipped(*, order_id: UUID) -> Order:
    """Mark the order shipped (the carrier picked it up)."""
    return _transition(order_id, lambda order: order.mark_shipped())


def order_mark_delivered(*, order_id: UUID) -> Order:
    """Mark the order delivered."""
    return _transition(order_id, lambda order: order.mark_delivered())
