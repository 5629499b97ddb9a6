"""One e-mail per (order, event): a repeated call, a replay or a requeue never sends a second."""

import uuid
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from notifications.handlers import email_customer
from notifications.models import Notification
from orders.events import OrderConfirmed, OrderShipped
from outbox.models import Delivery
from outbox.registry import EventContext
from tests.analytics.pump import deliveries_run
from tests.notifications.conftest import free_port
from tests.notifications.factories import ShipmentFactory, event_recorded, order_made

HANDLER = "notifications.email_customer"


def context_for(order, event_type="order.confirmed", attempt=1):
    return EventContext(
        event_id=str(uuid.uuid4()), event_type=event_type, aggregate_type="order",
        aggregate_id=str(order.id), occurred_at=None, headers={}, attempt=attempt,
    )  # fmt: skip


def notification_row(order):
    fields = ("kind", "status", "recipient", "attempts", "error", "sent_at")
    return Notification.objects.values(*fields).get(order_id=order.id)


def replay(*args):
    """Run `replay_outbox` with `args`; its output."""
    out = StringIO()
    call_command("replay_outbox", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_the_handler_called_twice_for_one_event_sends_one_email():
    # given
    order = order_made(status="confirmed", customer__email="ada@example.com")
    event, context = OrderConfirmed(order_id=order.id), context_for(order)
    # when
    email_customer(event, context)
    email_customer(event, context)
    # then
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ada@example.com"]
    note = Notification.objects.get()
    assert (note.kind, note.status, note.attempts, note.recipient) == (
        "confirmed", "sent", 1, "ada@example.com",
    )  # fmt: skip


@pytest.mark.django_db
def test_each_event_of_an_order_gets_its_own_email():
    # given
    order = order_made(status="shipped")
    ShipmentFactory(order_id=order.id, status="shipped")
    # when
    email_customer(OrderConfirmed(order_id=order.id), context_for(order))
    email_customer(OrderShipped(order_id=order.id), context_for(order, "order.shipped"))
    # then
    assert [m.subject.split()[-1] for m in mail.outbox] == ["confirmed", "shipped"]
    assert sorted(Notification.objects.values_list("kind", flat=True)) == ["confirmed", "shipped"]


@pytest.mark.django_db
def test_a_customer_without_an_email_address_is_skipped_not_failed():
    # given
    order = order_made(status="confirmed", customer__email="")
    # when
    email_customer(OrderConfirmed(order_id=order.id), context_for(order))
    # then
    assert mail.outbox == []
    assert Notification.objects.get().status == "skipped"


@pytest.mark.django_db(transaction=True)
def test_replaying_a_handled_order_event_sends_no_second_email(settings):
    # given: the confirmation went out through the outbox
    settings.OUTBOX_WAKE_ON_COMMIT = False
    order = order_made(status="confirmed")
    row = event_recorded(OrderConfirmed(order_id=order.id))
    assert deliveries_run() == 2  # the e-mail and the daily sales
    sent = notification_row(order)
    # when: replayed while the inbox record exists
    summary = replay("--type", "order.confirmed")
    ran = deliveries_run()
    # then
    assert "2 skipped (already done)" in summary
    assert ran == 0
    # when: replayed after the delivery row (the inbox record) was purged
    Delivery.objects.filter(event=row, handler=HANDLER).delete()
    summary = replay("--id", str(row.event_id), "--handler", HANDLER)
    ran = deliveries_run()
    # then: the handler ran again, and the notification record stopped a second e-mail
    assert "1 created" in summary
    assert ran == 1
    assert Delivery.objects.get(event=row, handler=HANDLER).status == "done"
    assert len(mail.outbox) == 1
    assert notification_row(order) == sent


@pytest.mark.django_db(transaction=True)
def test_a_dead_lettered_email_is_sent_once_when_requeued(settings):
    # given: the SMTP server is down and the handler gets one attempt
    settings.OUTBOX_WAKE_ON_COMMIT = False
    settings.OUTBOX_MAX_ATTEMPTS = 1
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    order = order_made(status="confirmed")
    event_recorded(OrderConfirmed(order_id=order.id))
    # when
    deliveries_run()
    # then: dead, and the notification says why
    dead = Delivery.objects.get(handler=HANDLER)
    assert (dead.status, dead.attempts) == ("dead", 1)
    failed = notification_row(order)
    assert (failed["status"], failed["attempts"], failed["sent_at"]) == ("failed", 1, None)
    assert failed["recipient"] == order.customer.email  # so an operator finds it by address
    assert failed["error"].startswith("ConnectionRefusedError")
    assert failed["error"].endswith("(gave up)")
    # when: the server is back and the dead letter is replayed
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    summary = replay("--status", "dead")
    deliveries_run()
    # then
    assert "1 requeued" in summary
    assert len(mail.outbox) == 1
    sent = notification_row(order)
    assert (sent["status"], sent["attempts"], sent["error"]) == ("sent", 1, "")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "args",
    [
        ("--type", "order.confirmed", "--reprocess"),
        ("--type", "order.confirmed", "--handler", HANDLER, "--reprocess"),
        ("--aggregate", "order:{order_id}", "--handler", HANDLER, "--reprocess", "--force"),
    ],
)
def test_reprocessing_order_events_for_the_email_handler_is_refused(settings, args):
    # given
    settings.OUTBOX_WAKE_ON_COMMIT = False
    order = order_made(status="confirmed")
    event_recorded(OrderConfirmed(order_id=order.id))
    deliveries_run()
    before = list(Delivery.objects.order_by("id").values_list("status", "attempts", "done_at"))
    # when
    with pytest.raises(CommandError) as refused:
        replay(*(arg.format(order_id=order.id) for arg in args))
    # then
    assert HANDLER in str(refused.value)
    assert "not replayable" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert list(Delivery.objects.order_by("id").values_list("status", "attempts", "done_at")) == (
        before
    )
    assert deliveries_run() == 0
    assert len(mail.outbox) == 1
