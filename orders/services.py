"""Writes of the orders context: placing orders and moving them along their life."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from inventory.models import Product
from orders.events import OrderCreated, OrderLine
from orders.models import Order, OrderItem, Status
from outbox.services import events_record


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
    now = timezone.now()
    order = Order(
        customer=customer,
        currency=settings.SHOP_CURRENCY,
        shipping_address=shipping_address,
        payment_token=payment_token,
        created_at=now,
        updated_at=now,
    )
    # No savepoint when nested (the API's Idempotency-Key transaction): nothing
    # here is caught and retried inside the caller's transaction, and a
    # savepoint costs two round trips per placement.
    with transaction.atomic(savepoint=False):
        items = _order_insert(order, lines)
        # The order's row, written above, is its aggregate's lock (events_record's rule).
        events_record([_created_event(order, items)])
    _keep_items(order, items)
    return order


def _order_insert(order: Order, lines: Sequence[LineRequest]) -> list[OrderItem]:
    """Insert the unsaved `order` and its lines, priced from the catalog; returns the lines.

    Sets `order.total`. Raises `UnavailableProducts` (having written nothing)
    when a line names a SKU that does not exist or is not for sale.
    """
    if connection.vendor == "postgresql":
        return _insert_in_one_statement(order, lines)
    products = {p.sku: p for p in Product.objects.filter(sku__in=[ln.sku for ln in lines])}
    missing = [ln.sku for ln in lines if ln.sku not in products or not products[ln.sku].active]
    if missing:
        raise UnavailableProducts(missing)
    order.total = sum((products[ln.sku].price * ln.quantity for ln in lines), Decimal("0.00"))
    order.save(force_insert=True)
    return OrderItem.objects.bulk_create(
        OrderItem(order=order, product=products[ln.sku], sku=ln.sku, name=products[ln.sku].name,
                  quantity=ln.quantity, unit_price=products[ln.sku].price)
        for ln in lines
    )  # fmt: skip


_ORDER_COLUMNS = ("id", "number", "customer_id", "status", "currency", "shipping_address",
                  "payment_token", "cancel_reason", "failure_reason", "created_at",
                  "updated_at")  # fmt: skip
_ORDER_VALUES = "%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s"
# The catalog is read, the order priced and inserted, and its lines inserted in
# line order (ids follow it, as bulk_create's did), all in one round trip. The
# order row exists only if every line found its product for sale (HAVING); the
# query returns the products it found either way.
_INSERT_ORDER = f"""
WITH line (sku, quantity, position) AS (VALUES {{lines}}),
priced AS (
    SELECT product.id, product.sku, product.name, product.price, line.quantity, line.position
    FROM line JOIN {Product._meta.db_table} AS product
        ON product.sku = line.sku AND product.active
),
placed AS (
    INSERT INTO {Order._meta.db_table} ({", ".join(_ORDER_COLUMNS)}, total)
    SELECT {_ORDER_VALUES}, SUM(price * quantity) FROM priced
    HAVING COUNT(*) = %s
    RETURNING total
),
item AS (
    INSERT INTO {OrderItem._meta.db_table} (order_id, product_id, sku, name, quantity, unit_price)
    SELECT %s, id, sku, name, quantity, price FROM priced
    WHERE EXISTS (SELECT FROM placed) ORDER BY position
    RETURNING id, sku
)
SELECT priced.id, priced.sku, priced.name, priced.price, priced.quantity, item.id,
    (SELECT total FROM placed)
FROM priced LEFT JOIN item ON item.sku = priced.sku ORDER BY priced.position"""


@cache
def _insert_order_sql(lines: int) -> str:
    return _INSERT_ORDER.format(lines=", ".join(["(%s, %s::integer, %s::integer)"] * lines))


def _insert_in_one_statement(order: Order, lines: Sequence[LineRequest]) -> list[OrderItem]:
    """`_order_insert` as one PostgreSQL statement (the ORM takes three, and ~1 ms more Python)."""
    params: list[Any] = []
    for position, ln in enumerate(lines):
        params += [ln.sku, ln.quantity, position]
    # The values of _ORDER_COLUMNS, then the line count, then the order's id again.
    params += [order.id, order.number, order.customer_id, str(order.status), order.currency,
               json.dumps(order.shipping_address), order.payment_token, order.cancel_reason,
               order.failure_reason, order.created_at, order.updated_at,
               len(lines), order.id]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_insert_order_sql(len(lines)), params)
        rows = cursor.fetchall()
    if len(rows) < len(lines):
        found = {row[1] for row in rows}
        raise UnavailableProducts([ln.sku for ln in lines if ln.sku not in found])
    order.total = rows[0][6]
    order._state.adding, order._state.db = False, connection.alias
    return [
        OrderItem(id=item_id, order=order, product_id=product_id, sku=sku, name=name,
                  quantity=quantity, unit_price=price)
        for product_id, sku, name, price, quantity, item_id, _ in rows
    ]  # fmt: skip


def _keep_items(order: Order, items: list[OrderItem]) -> None:
    """Keep the written lines as `order.items.all()`, as prefetch_related would: no re-read."""
    cached = order.items.all()
    cached._result_cache, cached._prefetch_done = items, True
    order._prefetched_objects_cache = {"items": cached}


def _created_event(order: Order, items: Sequence[OrderItem]) -> OrderCreated:
    return OrderCreated(
        order_id=order.id,
        number=order.number,
        customer_id=order.customer_id,
        total=order.total,
        currency=order.currency,
        lines=tuple(
            OrderLine(sku=i.sku, name=i.name, quantity=i.quantity, unit_price=i.unit_price)
            for i in items
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
