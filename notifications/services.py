"""Compose and send the customer's e-mails about their order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.template.loader import render_to_string
from django.utils import timezone

from notifications.models import Notification
from orders.models import Order
from outbox.delivery import InProgressElsewhere
from payments.models import Payment
from shipping.models import Shipment

# What a failed order means for the customer's money, in plain language.
FAILURE_EXPLANATIONS = {
    "insufficient_stock": "Some items in your order are out of stock.",
    "payment_declined": "Your payment method was declined.",
    "payment_unavailable": "We could not reach the payment provider.",
    "shipping_unavailable": "Our carrier cannot deliver to your address.",
}


def _money_note(payment: Payment | None) -> str:
    """What happens to the customer's money, for a cancelled or failed order."""
    if payment is None or payment.status == Payment.Status.DECLINED:
        return "You have not been charged."
    if payment.status == Payment.Status.PENDING:
        return "If any amount was charged, it will be refunded in full."
    tense = "has been" if payment.status == Payment.Status.REFUNDED else "is being"
    return (
        f"The {payment.amount} {payment.currency} you paid {tense} refunded "
        "to your original payment method."
    )


def _context(order: Order) -> dict[str, Any]:
    payment = Payment.objects.filter(order_id=order.id).first()
    shipment = Shipment.objects.filter(order_id=order.id).first()
    return {
        "order": order,
        "items": list(order.items.all()),
        "payment": payment,
        "shipment": shipment,
        "failure_explanation": FAILURE_EXPLANATIONS.get(order.failure_reason, ""),
        "money_note": _money_note(payment),
    }


def notification_compose(*, kind: str, order: Order) -> EmailMultiAlternatives:
    """The e-mail of `kind` about `order`, in text and HTML."""
    context = _context(order)
    base = f"notifications/email/{kind}"
    subject = " ".join(render_to_string(f"{base}_subject.txt", context).split())
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"{base}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[order.customer.email],
    )
    message.attach_alternative(render_to_string(f"{base}.html", context), "text/html")
    return message


def notification_send(*, event_id: UUID, kind: str, order_id: UUID, attempt: int) -> Notification:
    """Send the e-mail for (event, kind) unless it went out already, with no transaction open.

    Claim the unique (event, kind) row and commit, send, then record the row
    sent: a redelivered or replayed event finds it sent, and a copy of this
    delivery running at the same time finds it claimed (`InProgressElsewhere`:
    its delivery waits for its lease). An error releases the claim and
    propagates, so the outbox retries and in the end dead-letters. The
    duplicates this cannot rule out: the server accepts the message and the
    sender dies before recording it; its claim expires after
    OUTBOX_LEASE_SECONDS (as the delivery's lease does) and the retry sends
    again (at-least-once, as with any side effect no transaction can take back).
    """
    notification = _claim(event_id=event_id, kind=kind, order_id=order_id)
    if notification.status != Notification.Status.SENDING:
        return notification
    order = Order.objects.select_related("customer").get(pk=order_id)
    try:
        message = notification_compose(kind=kind, order=order)
        if order.customer.email:
            message.send()
    except BaseException:
        Notification.objects.filter(pk=notification.pk, status=Notification.Status.SENDING).update(
            status=Notification.Status.FAILED, claimed_until=None
        )
        raise
    return _record_sent(notification, order=order, subject=message.subject, attempt=attempt)


def _claim(*, event_id: UUID, kind: str, order_id: UUID) -> Notification:
    """The (event, kind) row, claimed for this send (`sending`) unless it is sent or skipped."""
    lease = timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    with transaction.atomic():
        # INSERT … ON CONFLICT DO NOTHING, then lock: a racing copy waits on the unique
        # index and then finds the row, without get_or_create's savepoint.
        Notification.objects.bulk_create(
            [Notification(event_id=event_id, kind=kind, order_id=order_id, status="failed")],
            ignore_conflicts=True,
        )
        notification = Notification.objects.select_for_update().get(event_id=event_id, kind=kind)
        if notification.status in (Notification.Status.SENT, Notification.Status.SKIPPED):
            return notification
        claimable = Q(status=Notification.Status.FAILED) | Q(claimed_until__lte=Now())
        if not Notification.objects.filter(claimable, pk=notification.pk).update(
            status=Notification.Status.SENDING, claimed_until=Now() + lease
        ):
            raise InProgressElsewhere(f"{notification} is being sent by another process")
    notification.status = Notification.Status.SENDING
    return notification


def _record_sent(
    notification: Notification, *, order: Order, subject: str, attempt: int
) -> Notification:
    notification.recipient = order.customer.email
    notification.subject = subject[:200]
    notification.status = (
        Notification.Status.SENT if order.customer.email else Notification.Status.SKIPPED
    )
    notification.attempts = attempt
    notification.error = ""
    notification.sent_at = timezone.now()
    notification.claimed_until = None
    notification.save(update_fields=_SENT_FIELDS)
    return notification


_SENT_FIELDS = ("recipient", "subject", "status", "attempts", "error", "sent_at", "claimed_until",
                "updated_at")  # fmt: skip


def notification_record_failure(
    *, event_id: UUID, kind: str, order_id: UUID, attempt: int, error: str
) -> None:
    """Show a failed send on the record (the send's own transaction was rolled back)."""
    notification, _ = Notification.objects.get_or_create(
        event_id=event_id, kind=kind, defaults={"order_id": order_id, "status": "failed"}
    )
    # The recipient too, so an operator finds a customer's failed e-mails by address.
    recipient = (
        Order.objects.filter(pk=order_id).values_list("customer__email", flat=True).first() or ""
    )
    if notification.status == Notification.Status.FAILED:
        Notification.objects.filter(pk=notification.pk).update(
            attempts=attempt, error=error[:2000], recipient=recipient
        )


def notification_resend(*, notification: Notification, by: Any) -> Notification:
    """Send a notification's e-mail again, on an operator's explicit request."""
    order = Order.objects.select_related("customer").get(pk=notification.order_id)
    notification_compose(kind=notification.kind, order=order).send()
    with transaction.atomic():
        Notification.objects.filter(pk=notification.pk).update(
            resent_count=F("resent_count") + 1, last_resent_at=timezone.now(), last_resent_by=by
        )
    notification.refresh_from_db()
    return notification
