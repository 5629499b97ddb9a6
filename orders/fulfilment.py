"""The order fulfilment saga: reserve stock, charge the payment, schedule the shipment.

When a step fails for good, the engine undoes the finished steps in reverse
(cancel the shipment, refund, release the stock) and the order fails with the
step's reason. Every external call carries a key made from the saga and step,
and every local write of an action goes through the attempt's `fence`, so an
attempt that outlived its lease writes nothing (sagas/fencing.py).

The reservation is a local step: the engine makes it in the transaction that
claims it. The charge and the booking call out, so each returns its
provider's answer (`Answer`) for the engine to write in the transaction that
records the step.

The order is read at step boundaries (`order_cancelled`, fresh in each engine
transaction) and that same row serves the step's action: everything an
action reads of it (lines, total, token, address) is fixed at placement.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings

from inventory.services import InsufficientStock, reservation_create, reservation_release
from orders.models import FailureReason, Order, Status
from orders.services import order_fail
from payments.gateways import PaymentDeclined
from payments.models import Payment
from payments.services import payment_capture_record, payment_charge_call, payment_refund
from sagas.definitions import Answer, PermanentFailure, SagaDefinition, Step, register, step_key
from sagas.models import Saga
from shipping.carriers import CarrierError, CarrierRejected
from shipping.models import Shipment
from shipping.services import shipment_booking_record, shipment_cancel, shipment_schedule_call
from shopflow.clock import db_now
from shopflow.fences import Fence

logger = logging.getLogger("shopflow.orders")

FULFILMENT = "order_fulfilment"


# Where a saga instance keeps the order read at its last step boundary. A saga
# instance lives for one claiming transaction and the move it hands on, no longer.
_ORDER = "_fulfilment_order"


def _order(saga: Saga) -> Order:
    """The saga's order as read at this step's boundary (else read now)."""
    order = saga.__dict__.get(_ORDER)
    if order is None:
        order = saga.__dict__[_ORDER] = Order.objects.get(pk=saga.key)
    return order


def reserve_stock(saga: Saga, fence: Fence) -> dict[str, Any]:
    order = _order(saga)
    lines = {item.sku: item.quantity for item in order.items.all()}
    try:
        reservation = reservation_create(order_id=order.id, lines=lines, fence=fence)
    except InsufficientStock as exc:
        raise PermanentFailure(FailureReason.INSUFFICIENT_STOCK, str(exc)) from exc
    return {"reservation_id": reservation.pk}


def release_stock(saga: Saga) -> None:
    reservation_release(order_id=_order(saga).id)


def charge_payment(saga: Saga, fence: Fence) -> dict[str, Any] | Answer:
    order = _order(saga)
    try:
        charged = payment_charge_call(
            order_id=order.id,
            amount=order.total,
            currency=order.currency,
            token=order.payment_token,
            idempotency_key=step_key(saga, "charge_payment"),
            fence=fence,
        )
    except PaymentDeclined as exc:
        raise PermanentFailure(FailureReason.PAYMENT_DECLINED, str(exc)) from exc
    if isinstance(charged, Payment):
        return _charged(charged)
    return Answer(lambda: _charged(payment_capture_record(charged)))


def _charged(payment: Payment) -> dict[str, Any]:
    return {"payment_id": payment.pk, "provider_ref": payment.provider_ref}


def refund_payment(saga: Saga) -> None:
    # The refund's key comes from the payment: one refund at most, whoever asks.
    payment_refund(order_id=_order(saga).id)


def schedule_shipment(saga: Saga, fence: Fence) -> dict[str, Any] | Answer:
    order = _order(saga)
    try:
        booked = shipment_schedule_call(
            order_id=order.id,
            address=order.shipping_address,
            idempotency_key=step_key(saga, "schedule_shipment"),
            fence=fence,
        )
    except CarrierRejected as exc:
        raise PermanentFailure(FailureReason.SHIPPING_UNAVAILABLE, str(exc)) from exc
    if isinstance(booked, Shipment):
        return _scheduled(booked)
    return Answer(lambda: _scheduled(shipment_booking_record(booked)))


def _scheduled(shipment: Shipment) -> dict[str, Any]:
    return {"shipment_id": shipment.pk, "tracking_number": shipment.tracking_number}


def cancel_shipment(saga: Saga) -> None:
    # The key finds a booking whose answer was lost (the step was in doubt).
    shipment_cancel(order_id=_order(saga).id, idempotency_key=step_key(saga, "schedule_shipment"))


def confirm_order(saga: Saga) -> bool:
    """Confirm the order, unless it was cancelled meanwhile (then compensate).

    The order row is locked and confirmed here, in the saga's completing
    transaction, rather than through `order_confirm`, which would lock it again
    inside a savepoint of its own: nothing here is caught and retried.
    """
    order = Order.objects.select_for_update().get(pk=saga.key)
    if order.status != Status.PENDING:
        return False
    order.confirm()
    order.save(update_fields=["status", "updated_at"])
    return True


def fail_order(saga: Saga) -> None:
    """Fail a still pending order with the saga's reason; a cancelled one stays cancelled."""
    order = Order.objects.select_for_update().get(pk=saga.key)
    if order.status == Status.PENDING:
        order_fail(order_id=order.id, reason=saga.failure_reason)


def order_cancelled(saga: Saga) -> bool:
    """Whether the order was cancelled, even if its `order.cancelled` is not handled yet.

    Read afresh in each engine transaction that crosses a step boundary; the
    steps' actions then use this row.
    """
    order = saga.__dict__[_ORDER] = Order.objects.filter(pk=saga.key).first()
    return order is not None and order.status == Status.CANCELLED


fulfilment = register(
    SagaDefinition(
        name=FULFILMENT,
        steps=(
            Step("reserve_stock", reserve_stock, release_stock,
                 exhausted_reason=FailureReason.INSUFFICIENT_STOCK, local=True),
            Step("charge_payment", charge_payment, refund_payment,
                 exhausted_reason=FailureReason.PAYMENT_UNAVAILABLE),
            Step("schedule_shipment", schedule_shipment, cancel_shipment,
                 exhausted_reason=FailureReason.SHIPPING_UNAVAILABLE),
        ),
        on_completed=confirm_order,
        on_compensated=fail_order,
        called_off=order_cancelled,
    )
)  # fmt: skip


def late_bookings_call_off(*, limit: int = 100) -> int:
    """Ask the carrier again about bookings nobody recorded; returns how many were called off.

    A stale booking attempt that lands after the compensation looked for it is
    not recorded (its fence refuses) and is normally undone at once by the
    compensation run again for it. If the attempt's worker died first, nobody
    asks again: this does, by the step's key, for sagas compensated within
    LATE_PROVIDER_EFFECT_WINDOW_SECONDS whose booking step ran and whose
    order has no shipment on record. Beat runs it (orders.call_off_late_bookings).
    """
    window = timedelta(seconds=settings.LATE_PROVIDER_EFFECT_WINDOW_SECONDS)
    sagas = list(
        Saga.objects.filter(
            definition=FULFILMENT,
            status=Saga.Status.COMPENSATED,
            finished_at__gte=db_now() - window,
            steps__name="schedule_shipment",
            steps__attempts__gt=0,
        ).order_by("-finished_at")[:limit]
    )
    recorded = set(
        Shipment.objects.filter(order_id__in=[saga.key for saga in sagas]).values_list(
            "order_id", flat=True
        )
    )
    called_off = 0
    for saga in (saga for saga in sagas if UUID(saga.key) not in recorded):
        try:
            cancel_shipment(saga)
        except CarrierError:
            logger.warning("asking the carrier again for saga %s failed; beat retries", saga.pk)
            continue
        called_off += Shipment.objects.filter(order_id=saga.key).exists()
    return called_off
