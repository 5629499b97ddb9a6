"""Writes of the inventory context: catalog, restocks and reservations.

Stock rows are locked in primary-key order (`_lock_products`), so two orders
over the same SKUs in opposite orders queue behind each other instead of
deadlocking, and availability read under the lock cannot be oversold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from uuid import UUID

from django.db import transaction
from django.db.models import Case, F, Value, When

from inventory.events import (
    ProductRestocked,
    ReservationCommitted,
    ReservationRejected,
    Shortage,
    StockLine,
    StockReleased,
    StockReserved,
)
from inventory.models import Product, Reservation, ReservationLine
from outbox.services import events_record
from shopflow.fences import Fence, fenced_insert


class InsufficientStock(Exception):
    """Some lines cannot be reserved; `shortages` names every one of them."""

    def __init__(self, shortages: Iterable[Shortage]) -> None:
        self.shortages = tuple(shortages)
        super().__init__(
            "insufficient stock: "
            + ", ".join(
                f"{s.sku} (wanted {s.requested}, {s.available} left)" for s in self.shortages
            )
        )


class UnknownProduct(LookupError):
    """A SKU that is not in the catalog."""


def product_create(*, sku: str, name: str, price: Decimal, stock: int = 0) -> Product:
    """Add a product to the catalog with its initial stock."""
    return Product.objects.create(sku=sku, name=name, price=price, on_hand=stock)


def product_restock(*, sku: str, quantity: int) -> Product:
    """Add `quantity` units to a product's stock on hand."""
    if quantity <= 0:
        raise ValueError("restock quantity must be positive")
    with transaction.atomic():
        product = Product.objects.select_for_update().filter(sku=sku).first()
        if product is None:
            raise UnknownProduct(sku)
        product.on_hand = F("on_hand") + quantity
        product.restocked_total = F("restocked_total") + quantity
        product.save(update_fields=["on_hand", "restocked_total", "updated_at"])
        product.refresh_from_db(fields=["on_hand", "restocked_total"])
        events_record([ProductRestocked(sku=sku, quantity=quantity, on_hand=product.on_hand)])
    return product


def _lock_products(skus: Iterable[str]) -> dict[str, Product]:
    """Lock the products' rows in primary-key order (the deadlock-free order)."""
    products = Product.objects.select_for_update().filter(sku__in=set(skus)).order_by("pk")
    return {p.sku: p for p in products}


def _lock_reservation(order_id: UUID) -> Reservation | None:
    return Reservation.objects.select_for_update().filter(order_id=order_id).first()


def reservation_create(
    *, order_id: UUID, lines: Mapping[str, int], fence: Fence | None = None
) -> Reservation:
    """Reserve every line for the order, or none (raises `InsufficientStock`).

    Idempotent: a reservation that already exists for the order is returned
    unchanged. A rejection is recorded as `inventory.reservation_rejected`.
    `fence` guards the reservation's insert, the transaction's first write, and
    raises to refuse the whole write (a saga attempt that is no longer its
    step's current one). Inside a caller's transaction (the saga engine's, for
    a local step) it adds no savepoint: an error here fails the caller's whole
    transaction, as the caller expects of a write it makes its own.
    """
    # A non-positive quantity would pass the availability check and lower `reserved`.
    if not lines or any(quantity <= 0 for quantity in lines.values()):
        raise ValueError("a reservation needs at least one line, each with a positive quantity")
    with transaction.atomic(savepoint=False):
        reservation = _claim_reservation(order_id, fence)
        if reservation is None:
            return Reservation.objects.get(order_id=order_id)
        products = _lock_products(lines)
        shortages = _shortages(products, lines)
        if shortages:  # recorded while this transaction still holds the row it inserted
            events_record([ReservationRejected(order_id=order_id, shortages=tuple(shortages))])
            reservation.delete()
        else:
            _reserve(reservation, products, lines)
    if shortages:
        raise InsufficientStock(shortages)
    return reservation


def _claim_reservation(order_id: UUID, fence: Fence | None) -> Reservation | None:
    """Insert the order's reservation row, or None if the order already has one.

    Inserted before any stock lock: a concurrent call for the same order waits
    on the unique index, then finds this one, whatever SKUs either asked for.
    One statement with the fence's check (`fenced_insert`), no savepoint.
    """
    reservation = Reservation(order_id=order_id)
    return reservation if fenced_insert(fence, reservation) else None


def _shortages(products: dict[str, Product], lines: Mapping[str, int]) -> list[Shortage]:
    shortages = []
    for sku, quantity in sorted(lines.items()):
        product = products.get(sku)
        available = product.available if product and product.active else 0
        if quantity > available:
            shortages.append(Shortage(sku=sku, requested=quantity, available=available))
    return shortages


def _reserve(
    reservation: Reservation, products: dict[str, Product], lines: Mapping[str, int]
) -> None:
    """Hold the lines' units (one UPDATE for every line) and record `inventory.reserved`.

    The event is recorded without saving the reservation again: its row was
    inserted by this transaction, which holds it until commit.
    """
    added = Case(
        *(When(pk=products[sku].pk, then=Value(quantity)) for sku, quantity in lines.items())
    )
    Product.objects.filter(pk__in=[products[sku].pk for sku in lines]).update(
        reserved=F("reserved") + added
    )
    ReservationLine.objects.bulk_create(
        ReservationLine(reservation=reservation, product=products[sku], quantity=quantity)
        for sku, quantity in lines.items()
    )
    events_record([StockReserved(order_id=reservation.order_id, lines=_stock_lines(lines))])


def _stock_lines(lines: Mapping[str, int]) -> tuple[StockLine, ...]:
    return tuple(StockLine(sku=sku, quantity=qty) for sku, qty in sorted(lines.items()))


def _held_lines(reservation: Reservation) -> dict[str, int]:
    return {line.product.sku: line.quantity for line in reservation.lines.select_related("product")}


def reservation_release(*, order_id: UUID) -> Reservation | None:
    """Give an active reservation's units back; does nothing if none is active."""
    return _settle(order_id, Reservation.Status.RELEASED, StockReleased, on_hand_too=False)


def reservation_commit(*, order_id: UUID) -> Reservation | None:
    """Turn an active reservation into a shipment: the units leave `on_hand`."""
    return _settle(order_id, Reservation.Status.COMMITTED, ReservationCommitted, on_hand_too=True)


def _settle(
    order_id: UUID,
    status: str,
    event: type[StockReleased] | type[ReservationCommitted],
    *,
    on_hand_too: bool,
) -> Reservation | None:
    """End an active reservation: its units leave `reserved` (and `on_hand` if shipped)."""
    with transaction.atomic():
        reservation = _lock_reservation(order_id)
        if reservation is None or reservation.status != Reservation.Status.ACTIVE:
            return reservation
        lines = _held_lines(reservation)
        products = _lock_products(lines)
        for sku, quantity in lines.items():
            change = {"reserved": F("reserved") - quantity}
            if on_hand_too:
                change["on_hand"] = F("on_hand") - quantity
            Product.objects.filter(pk=products[sku].pk).update(**change)
        reservation.status = status
        reservation.raise_event(event(order_id=order_id, lines=_stock_lines(lines)))
        reservation.save(update_fields=["status", "updated_at"])
    return reservation
