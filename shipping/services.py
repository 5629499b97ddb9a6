"""Writes of the shipping context: book, cancel, and apply the carrier's updates."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import Exists, OuterRef

from inventory.services import reservation_commit
from orders.models import InvalidTransition, Order
from orders.models import Status as OrderStatus
from orders.services import order_mark_delivered, order_mark_shipped
from outbox.services import aggregate_lock, events_record
from shipping.carriers import CarrierError, CarrierRejected, get_carrier
from shipping.events import ShipmentCancelled, ShipmentRejected, ShipmentScheduled
from shipping.models import Shipment
from shopflow.clock import db_now
from shopflow.fences import Fence, fence_check, fenced_insert, fenced_write
from shopflow.transactions import inside_transaction, outside_transaction

logger = logging.getLogger("shopflow.shipping")


class UnknownTrackingNumber(LookupError):
    """No shipment has this tracking number."""


@dataclass(frozen=True)
class Booked:
    """A booking the carrier made under the key, not recorded yet."""

    order_id: UUID
    tracking_number: str
    idempotency_key: str


def shipment_schedule(
    *,
    order_id: UUID,
    address: dict[str, Any],
    idempotency_key: str,
    fence: Fence | None = None,
) -> Shipment:
    """Book the order's shipment once (raises CarrierRejected / CarrierUnavailable).

    `fence` runs before the carrier is called and inside every transaction that
    records the outcome, and raises to refuse: a saga attempt that outlived its
    lease books nothing more and records nothing; a booking of its that lands
    anyway is found by the compensation through the key.
    """
    booked = shipment_schedule_call(
        order_id=order_id, address=address, idempotency_key=idempotency_key, fence=fence
    )
    if isinstance(booked, Shipment):
        return booked
    with transaction.atomic():
        return shipment_booking_record(booked, fence)


def shipment_schedule_call(
    *,
    order_id: UUID,
    address: dict[str, Any],
    idempotency_key: str,
    fence: Fence | None = None,
) -> Shipment | Booked:
    """The carrier's half of `shipment_schedule`: the booking made, for `shipment_booking_record`.

    A shipment on record already is returned as it is, without calling the
    carrier; a rejection is recorded here (and raised).
    """
    outside_transaction("shipment_schedule", "the carrier")
    existing = _booked(order_id, fence)
    if existing is not None:
        return existing
    try:
        tracking = get_carrier().schedule(
            order_id=order_id, address=address, idempotency_key=idempotency_key
        )
    except CarrierRejected as exc:
        with transaction.atomic():
            aggregate_lock("shipment", order_id)  # no shipment row to lock
            fence_check(fence)
            events_record([ShipmentRejected(order_id=order_id, reason=str(exc))])
        raise
    return Booked(order_id, tracking, idempotency_key)


def _booked(order_id: UUID, fence: Fence | None) -> Shipment | None:
    """The order's shipment if it has one; first, the fence refuses a stale attempt.

    One statement, in autocommit: no write follows here, so nothing needs the
    fence's lock beyond it (the booking's record checks the fence again).
    """
    order = Shipment._meta.get_field("order_id").get_db_prep_value(order_id, connection)
    rows = fenced_write(fence, _BOOKED_SQL, [order])
    return Shipment.objects.get(pk=rows[0][0]) if rows else None


_BOOKED_SQL = f"SELECT id FROM {Shipment._meta.db_table} WHERE order_id = %s AND {{held}}"


def shipment_booking_record(booked: Booked, fence: Fence | None = None) -> Shipment:
    """Record the booking, once: the first to record it wins, a later one reads it.

    In the caller's transaction, under the shipment's lock, which every writer
    of an order's shipment and its events takes (a rejection too), then the
    insert guarded by `fence`.
    """
    inside_transaction("a booking")
    order_id, tracking = booked.order_id, booked.tracking_number
    shipment = Shipment(
        order_id=order_id, tracking_number=tracking, idempotency_key=booked.idempotency_key
    )
    aggregate_lock("shipment", order_id)
    if not fenced_insert(fence, shipment):
        return Shipment.objects.get(order_id=order_id)
    events_record([ShipmentScheduled(order_id=order_id, tracking_number=tracking)])
    return shipment


def shipment_cancel(*, order_id: UUID, idempotency_key: str = "") -> Shipment | None:
    """Call off a scheduled shipment; anything else is left as it is.

    With the booking's `idempotency_key`, a booking whose answer never came (a
    timeout) is found at the carrier, recorded as scheduled, then called off.
    """
    outside_transaction("shipment_cancel", "the carrier")
    shipment = Shipment.objects.filter(order_id=order_id).first()
    if shipment is None and idempotency_key:
        tracking = get_carrier().find(idempotency_key=idempotency_key)
        if tracking is not None:
            with transaction.atomic():
                shipment = shipment_booking_record(Booked(order_id, tracking, idempotency_key))
    if shipment is None or shipment.status != Shipment.Status.SCHEDULED:
        return shipment
    get_carrier().cancel(tracking_number=shipment.tracking_number)
    with transaction.atomic():
        shipment = Shipment.objects.select_for_update().get(pk=shipment.pk)
        if shipment.status == Shipment.Status.SCHEDULED:
            shipment.status = Shipment.Status.CANCELLED
            shipment.raise_event(
                ShipmentCancelled(order_id=order_id, tracking_number=shipment.tracking_number)
            )
            shipment.save()
    return shipment


# Orders whose shipment, if any, must be cancelled.
_OVER = (OrderStatus.CANCELLED, OrderStatus.FAILED)


def shipments_of_ended_orders_cancel(
    *, grace: timedelta = timedelta(minutes=1), limit: int = 100
) -> int:
    """Call off scheduled shipments of cancelled or failed orders; returns how many.

    Compensation calls a shipment off; what it can miss is a booking that landed
    late and whose own call-off failed at the carrier. Beat runs this (a
    shipment untouched for `grace`, so a compensation under way goes first).
    """
    ended = Order.objects.filter(pk=OuterRef("order_id"), status__in=_OVER)
    left = (
        Shipment.objects.filter(status=Shipment.Status.SCHEDULED)
        .filter(updated_at__lt=db_now() - grace)
        .filter(Exists(ended))
        .order_by("pk")
    )
    called_off = 0
    for shipment in left[:limit]:
        try:
            shipment_cancel(order_id=shipment.order_id)
        except CarrierError:
            logger.warning("calling off shipment %s failed; beat retries", shipment.pk)
            continue
        called_off += 1
    return called_off


def shipment_advance(*, tracking_number: str, status: str) -> Shipment:
    """Apply a carrier update (`shipped` or `delivered`) to the shipment and its order.

    Shipping commits the order's reservation: the units leave `on_hand`.
    Raises UnknownTrackingNumber, or InvalidTransition for a status the
    shipment (or its order) cannot take.
    """
    with transaction.atomic():
        shipment = (
            Shipment.objects.select_for_update().filter(tracking_number=tracking_number).first()
        )
        if shipment is None:
            raise UnknownTrackingNumber(tracking_number)
        if status not in Shipment.CARRIER_TRANSITIONS[shipment.status]:
            raise InvalidTransition(shipment.status, status)
        shipment.status = status
        shipment.save(update_fields=["status", "updated_at"])
        if status == Shipment.Status.SHIPPED:
            order_mark_shipped(order_id=shipment.order_id)
            reservation_commit(order_id=shipment.order_id)
        else:
            order_mark_delivered(order_id=shipment.order_id)
    return shipment
