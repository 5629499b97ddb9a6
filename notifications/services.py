"""Compose and send the customer's e-mails about their order."""

from __future__ import annotations

from functools import cache
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.signals import setting_changed
from django.db import connection, transaction
from django.db.models import F
from django.dispatch import receiver
from django.template.backends.django import Template
from django.template.loader import get_template
from django.utils import timezone

from notifications.models import Notification
from notifications.selectors import OrderForEmail, order_for_email
from orders.models import Order
from outbox.delivery import InProgressElsewhere
from payments.models import Payment
from shipping.models import Shipment
from shopflow.clock import db_later_sql, db_now_sql

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


def _context(mail: OrderForEmail) -> dict[str, Any]:
    return {
        "order": mail.order,
        "items": mail.items,
        "payment": mail.payment,
        "shipment": mail.shipment,
        "failure_explanation": FAILURE_EXPLANATIONS.get(mail.order.failure_reason, ""),
        "money_note": _money_note(mail.payment),
    }


@cache
def _templates(kind: str) -> tuple[Template, Template, Template]:
    """The subject, text and HTML templates of `kind`, loaded and compiled once per process.

    Django's cached loader (the default since 4.1, DEBUG too) already keeps the
    compiled templates, so this only skips its lookup per render (no difference
    measured: ~0.25 ms for the three renders either way), and keeps the e-mail
    compiled once whatever `loaders` the settings name.
    """
    base = f"notifications/email/{kind}"
    return (
        get_template(f"{base}_subject.txt"),
        get_template(f"{base}.txt"),
        get_template(f"{base}.html"),
    )


@receiver(setting_changed)
def _templates_forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "TEMPLATES":  # a test swapped the engines: compile from the new ones
        _templates.cache_clear()


def _compose(kind: str, mail: OrderForEmail) -> EmailMultiAlternatives:
    context = _context(mail)
    subject, text, html = _templates(kind)
    message = EmailMultiAlternatives(
        subject=" ".join(subject.render(context).split()),
        body=text.render(context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[mail.order.customer.email],
    )
    message.attach_alternative(html.render(context), "text/html")
    return message


def notification_compose(*, kind: str, order: Order) -> EmailMultiAlternatives:
    """The e-mail of `kind` about `order`, in text and HTML."""
    mail = OrderForEmail(
        order=order,
        items=list(order.items.all()),
        payment=Payment.objects.filter(order_id=order.id).first(),
        shipment=Shipment.objects.filter(order_id=order.id).first(),
    )
    return _compose(kind, mail)


def notification_send(*, event_id: UUID, kind: str, order_id: UUID, attempt: int) -> str:
    """Send the e-mail for (event, kind) unless it went out already, with no transaction open.

    Claim the unique (event, kind) row (one statement, committed), read the
    order (one statement), send, then record the row sent (one statement): a
    redelivered or replayed event finds it sent, and a copy of this delivery
    running at the same time finds it claimed (`InProgressElsewhere`: its
    delivery waits for its lease). An error releases the claim and
    propagates, so the outbox retries and in the end dead-letters. The
    duplicates this cannot rule out: the server accepts the message and the
    sender dies before recording it; its claim expires after
    OUTBOX_LEASE_SECONDS (as the delivery's lease does) and the retry sends
    again (at-least-once, as with any side effect no transaction can take back).
    Returns the notification's status: `sent`, `skipped` (no address), or what an
    earlier delivery left it at.
    """
    claimed = _claim(event_id=event_id, kind=kind, order_id=order_id)
    if isinstance(claimed, str):
        return claimed
    try:
        mail = order_for_email(order_id)
        message = _compose(kind, mail)
        recipient = mail.order.customer.email
        if recipient:
            message.send()
    except BaseException:
        Notification.objects.filter(pk=claimed, status=Notification.Status.SENDING).update(
            status=Notification.Status.FAILED, claimed_until=None
        )
        raise
    return _record_sent(claimed, recipient=recipient, subject=message.subject, attempt=attempt)


_TABLE = Notification._meta.db_table
_FIELD = Notification._meta.get_field
# The claim: insert the (event, kind) row as `sending` until a lease from now, or
# take over one whose send failed or whose sender's claim expired; the row's id if
# claimed. A racing copy waits on the unique index (or the row), then finds the
# claim taken: no row returned. `{now}` and `{later}` are the database's clock.
_CLAIM_SQL = f"""
INSERT INTO "{_TABLE}" ("event_id", "kind", "order_id", "recipient", "subject", "status",
    "attempts", "error", "claimed_until", "resent_count", "created_at", "updated_at")
VALUES (%s, %s, %s, '', '', %s, 0, '', {{later}}, 0, %s, %s)
ON CONFLICT ("event_id", "kind") DO UPDATE SET "status" = EXCLUDED."status",
    "claimed_until" = EXCLUDED."claimed_until"
WHERE "{_TABLE}"."status" = %s
   OR ("{_TABLE}"."status" = %s AND "{_TABLE}"."claimed_until" <= {{now}})
RETURNING "id"
"""
# The row's status, when the claim did not take it (a redelivery, or a racing copy).
_STATUS_SQL = f'SELECT "status" FROM "{_TABLE}" WHERE "event_id" = %s AND "kind" = %s'
_RECORD_SENT_SQL = f"""
UPDATE "{_TABLE}" SET "recipient" = %s, "subject" = %s, "status" = %s, "attempts" = %s,
    "error" = '', "sent_at" = %s, "claimed_until" = NULL, "updated_at" = %s
WHERE "id" = %s
"""


def _claim(*, event_id: UUID, kind: str, order_id: UUID) -> int | str:
    """Claim the (event, kind) row for this send: its id; its status when sent or skipped.

    Raises `InProgressElsewhere` when another send holds a live claim on it.
    """
    later, later_params = db_later_sql(settings.OUTBOX_LEASE_SECONDS)
    created = _FIELD("created_at").get_db_prep_value(timezone.now(), connection)
    params = [
        _FIELD("event_id").get_db_prep_value(event_id, connection), kind,
        _FIELD("order_id").get_db_prep_value(order_id, connection),
        Notification.Status.SENDING.value, *later_params, created, created,
        Notification.Status.FAILED.value, Notification.Status.SENDING.value,
    ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL.format(later=later, now=db_now_sql()), params)
        row = cursor.fetchone()
        if row is not None:
            return row[0]
        cursor.execute(_STATUS_SQL, params[:2])
        (status,) = cursor.fetchone()
    if status in (Notification.Status.SENT, Notification.Status.SKIPPED):
        return status
    raise InProgressElsewhere(f"{kind} e-mail for {order_id} is being sent by another process")


def _record_sent(pk: int, *, recipient: str, subject: str, attempt: int) -> str:
    status = Notification.Status.SENT if recipient else Notification.Status.SKIPPED
    now = _FIELD("sent_at").get_db_prep_value(timezone.now(), connection)
    params = [recipient, subject[:200], status.value, attempt, now, now, pk]
    with connection.cursor() as cursor:
        cursor.execute(_RECORD_SENT_SQL, params)
    return status.value


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
