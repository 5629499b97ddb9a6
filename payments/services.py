"""Writes of the payments context: charge an order once, refund it at most once.

Gateway calls happen outside any transaction (a network call must never hold
row locks or run before the change it depends on commits); the outcome is
then recorded with its event in a short transaction: its own, or, for a
charge split into `payment_charge_call` and `payment_capture_record`, the
caller's (the saga engine records the step's outcome in the same one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from outbox.services import events_record
from payments import events
from payments.gateways import GatewayError, PaymentDeclined, get_gateway
from payments.models import Payment
from shopflow.clock import db_now
from shopflow.fences import Fence, fence_check, fenced_insert, fenced_write
from shopflow.transactions import inside_transaction, outside_transaction

logger = logging.getLogger("shopflow.payments")


class PaymentClosed(Exception):
    """The payment was closed by a compensation that found no charge: it is not charged now."""


@dataclass(frozen=True)
class ChargeMade:
    """A charge the gateway made under the payment's key, not recorded yet."""

    payment: Payment
    reference: str


def payment_charge(
    *,
    order_id: UUID,
    amount: Decimal,
    currency: str,
    token: str,
    idempotency_key: str,
    fence: Fence | None = None,
) -> Payment:
    """Capture `amount` for the order, once (raises PaymentDeclined / GatewayUnavailable).

    A payment already captured is returned as it is, without calling the
    gateway again (saleor#12229); a repeated call after a crash reuses the same
    idempotency key, so the gateway returns its first charge. A closed payment
    raises PaymentClosed. `fence` runs inside every transaction that writes
    (the payment row, the capture, the decline) and raises to refuse the write:
    a saga attempt that outlived its lease records nothing, and its charge, if
    one lands, is found by the compensation through the key.
    """
    charged = payment_charge_call(
        order_id=order_id, amount=amount, currency=currency, token=token,
        idempotency_key=idempotency_key, fence=fence,
    )  # fmt: skip
    if isinstance(charged, Payment):
        return charged
    with transaction.atomic():
        return payment_capture_record(charged, fence)


def payment_charge_call(
    *,
    order_id: UUID,
    amount: Decimal,
    currency: str,
    token: str,
    idempotency_key: str,
    fence: Fence | None = None,
) -> Payment | ChargeMade:
    """The gateway's half of `payment_charge`: the charge made, for `payment_capture_record`.

    The payment row is written first (through `fence`), so a compensation finds
    the key whatever happens next; a decline is recorded here (and raised). A
    payment captured already is returned as it is, without calling the gateway.
    """
    outside_transaction("payment_charge", "the payment gateway")
    payment = Payment(order_id=order_id, amount=amount, currency=currency, token=token,
                      idempotency_key=idempotency_key)  # fmt: skip
    # INSERT … ON CONFLICT DO NOTHING, then read only if it was there: a racing call
    # waits on the unique index and finds the first one's row, without a savepoint.
    if not fenced_insert(fence, payment):
        payment = Payment.objects.get(order_id=order_id)
    if payment.status in (Payment.Status.CAPTURED, Payment.Status.REFUNDED):
        return payment
    if payment.status == Payment.Status.DECLINED:
        raise PaymentDeclined(payment.decline_reason or "card declined")
    if payment.closed:
        raise PaymentClosed(f"payment {payment.pk} was closed without a charge")
    try:
        charge = get_gateway().charge(
            amount=payment.amount,
            currency=payment.currency,
            token=payment.token,
            idempotency_key=payment.idempotency_key,
        )
    except PaymentDeclined as exc:
        _record_decline(payment.pk, str(exc), fence)
        raise
    return ChargeMade(payment, charge.reference)


def _refund_late_charge(payment: Payment) -> bool:
    """Refund a charge that landed after its payment was closed; whether it went back.

    A failure is logged, not raised: `payments_late_charges_refund` (beat) tries
    again until it succeeds, from the persisted state (closed and captured).
    """
    try:
        payment = payment_refund(order_id=payment.order_id)
    except GatewayError:
        logger.warning("refund of late charge on payment %s failed; beat retries", payment.pk)
        return False
    return payment is not None and payment.status == Payment.Status.REFUNDED


def payments_late_charges_refund(*, limit: int = 100) -> int:
    """Give back charges that landed after their payment was closed; returns how many.

    Two kinds, both money a provider moved after compensation had looked for
    it: a late charge recorded whose refund failed (closed and captured), and
    a charge that landed while nobody was left to record it (its attempt's
    worker died, or the compensation's second look failed). The gateway is
    asked again, by the payment's key, for every payment closed within
    LATE_PROVIDER_EFFECT_WINDOW_SECONDS, longer than any call can outlive its lease.
    """
    window = timedelta(seconds=settings.LATE_PROVIDER_EFFECT_WINDOW_SECONDS)
    # Charges known to have landed first: many closed payments to ask about (after a
    # gateway outage, say) must not hold back one whose refund only has to be retried.
    captured = Payment.objects.filter(closed=True, status=Payment.Status.CAPTURED)
    late = list(captured.order_by("pk")[:limit])
    recent = Payment.objects.filter(
        closed=True, status__in=_UNSETTLED, updated_at__gte=db_now() - window
    )
    late += recent.order_by("-updated_at")[: limit - len(late)]  # the newest, likeliest first
    return sum(_refund_late_charge(payment) for payment in late)


# No charge on record: pending, or declined by a later attempt after an earlier one
# timed out (a provider may refuse a key it already charged under). A charge found
# under the key is recorded over either.
_UNSETTLED = (Payment.Status.PENDING, Payment.Status.DECLINED)


def payment_capture_record(charged: ChargeMade, fence: Fence | None = None) -> Payment:
    """Record the charge made under the payment's key, unless a charge is recorded already.

    In the caller's transaction: one UPDATE, its row lock the payment
    aggregate's for the event, guarded by `fence` if any; only if it changed
    nothing is the payment read again.
    """
    inside_transaction("a capture")
    payment, reference = charged.payment, charged.reference
    now = timezone.now()
    params = [Payment.Status.CAPTURED, reference, now, payment.pk, *_UNSETTLED]
    if not fenced_write(fence, _CAPTURE_SQL, params):
        return Payment.objects.get(pk=payment.pk)
    payment.status, payment.provider_ref, payment.updated_at = (
        Payment.Status.CAPTURED,
        reference,
        now,
    )
    events_record([
        events.PaymentCaptured(order_id=payment.order_id, amount=payment.amount,
                               currency=payment.currency, provider_ref=reference)
    ])  # fmt: skip
    return payment


_CAPTURE_SQL = f"""
UPDATE {Payment._meta.db_table} SET status = %s, provider_ref = %s, updated_at = %s
WHERE id = %s AND status IN (%s, %s) AND {{held}} RETURNING id"""


def _close(payment_pk: int) -> Payment:
    """Close a pending payment whose charge was looked up and not found."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_pk)
        if payment.status in _UNSETTLED and not payment.closed:
            payment.closed = True
            payment.save(update_fields=["closed", "updated_at"])
    return payment


def _record_decline(payment_pk: int, reason: str, fence: Fence | None) -> None:
    with transaction.atomic():
        fence_check(fence)
        payment = Payment.objects.select_for_update().get(pk=payment_pk)
        if payment.status == Payment.Status.PENDING:
            payment.status = Payment.Status.DECLINED
            payment.decline_reason = reason[:200]
            payment.raise_event(
                events.PaymentDeclined(
                    order_id=payment.order_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    reason=payment.decline_reason,
                )
            )
            payment.save()


def payment_refund(*, order_id: UUID) -> Payment | None:
    """Refund a captured payment in full, once; anything else is left as it is.

    The refund's idempotency key is the payment's (`Payment.refund_key`), so
    the saga, a late-charge sweep and an operator asking at once still move
    the money back at most once, whatever the provider does with a second key.
    A payment not captured may be one whose charge call failed without an
    answer (a timeout): the gateway is asked whether it charged under the
    payment's key, and a charge it made is recorded as captured first, then refunded.
    If it made none, the payment is closed (see `payment_charge`).
    """
    outside_transaction("payment_refund", "the payment gateway")
    payment = Payment.objects.filter(order_id=order_id).first()
    if payment is not None and payment.status in _UNSETTLED:
        charge = get_gateway().find_charge(idempotency_key=payment.idempotency_key)
        if charge is not None:
            with transaction.atomic():
                payment = payment_capture_record(ChargeMade(payment, charge.reference))
        else:  # nothing to refund; a call still in flight refunds its own charge
            payment = _close(payment.pk)
    if payment is None or payment.status != Payment.Status.CAPTURED:
        return payment
    refund = get_gateway().refund(
        charge_ref=payment.provider_ref, amount=payment.amount, idempotency_key=payment.refund_key
    )
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        if payment.status == Payment.Status.CAPTURED:
            payment.status = Payment.Status.REFUNDED
            payment.refund_ref = refund.reference
            payment.raise_event(
                events.PaymentRefunded(
                    order_id=payment.order_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    refund_ref=refund.reference,
                )
            )
            payment.save()
    return payment
