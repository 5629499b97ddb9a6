"""No network call inside a transaction: the e-mail goes out with none open, still once."""

from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connection
from django.utils import timezone

from notifications import services as notifications
from notifications.models import Notification
from orders.events import OrderConfirmed
from outbox import delivery as worker
from outbox import relay
from outbox.models import Delivery
from tests.analytics.pump import deliveries_run
from tests.notifications.factories import event_recorded, order_made

pytestmark = pytest.mark.django_db(transaction=True)

HANDLER = "notifications.email_customer"


class TransactionWatchingBackend(EmailBackend):
    """The locmem backend, noting whether a transaction was open at each send."""

    in_transaction: list[bool] = []

    def send_messages(self, messages):  # type: ignore[no-untyped-def]
        type(self).in_transaction.append(connection.in_atomic_block)
        return super().send_messages(messages)


@pytest.fixture
def watched(settings, no_wake_up):
    settings.EMAIL_BACKEND = f"{__name__}.TransactionWatchingBackend"
    TransactionWatchingBackend.in_transaction = []
    return TransactionWatchingBackend.in_transaction


def test_the_email_is_sent_with_no_transaction_open(watched):
    # given
    order = order_made(status="confirmed", customer__email="ada@example.com")
    event_recorded(OrderConfirmed(order_id=order.id))
    # when
    deliveries_run()
    # then
    assert watched == [False]
    assert Notification.objects.get().status == "sent"
    assert Delivery.objects.get(handler=HANDLER).status == "done"


def test_a_send_under_way_elsewhere_leaves_the_delivery_to_its_lease(watched):
    # given: another process has claimed this e-mail and is sending it
    order = order_made(status="confirmed")
    row = event_recorded(OrderConfirmed(order_id=order.id))
    Notification.objects.create(
        event_id=row.event_id, kind="confirmed", order_id=order.id, status="sending",
        claimed_until=timezone.now() + timedelta(minutes=1),
    )  # fmt: skip
    # when
    deliveries_run()
    # then: nothing sent; the delivery is left to its lease, its start counted: live
    # senders renew their delivery's lease, so one whose claim is still held while its
    # delivery is claimed again has most likely died (the next claim makes it a suspect)
    assert watched == []
    delivery = Delivery.objects.get(handler=HANDLER)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.lease_id is not None
    assert delivery.started_lease_id == delivery.lease_id


def test_a_claim_left_by_a_process_that_died_mid_send_is_taken_over_once_it_expires(watched):
    # given: a claim whose sender died before recording anything
    order = order_made(status="confirmed")
    row = event_recorded(OrderConfirmed(order_id=order.id))
    Notification.objects.create(
        event_id=row.event_id, kind="confirmed", order_id=order.id, status="sending",
        claimed_until=timezone.now() - timedelta(seconds=1),
    )  # fmt: skip
    # when
    deliveries_run()
    # then
    assert watched == [False]
    assert len(mail.outbox) == 1
    note = Notification.objects.get()
    assert (note.status, note.attempts, note.claimed_until) == ("sent", 1, None)
    assert Delivery.objects.get(handler=HANDLER).status == "done"


def _expire_leases() -> None:
    Delivery.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def test_a_send_that_killed_its_worker_stays_a_suspect(no_wake_up):
    # given: worker 1 started the e-mail's delivery, claimed the notification, and died
    order = order_made(status="confirmed", customer__email="ada@example.com")
    row = event_recorded(OrderConfirmed(order_id=order.id))
    relay.deliveries_claim(10)
    email = Delivery.objects.select_related("event").get(handler=HANDLER)
    assert worker._start(email)
    notifications._claim(event_id=row.event_id, kind="confirmed", order_id=order.id)
    # when: its lease runs out (the notification's claim, taken a moment later, not yet)
    _expire_leases()
    claim = relay._claim(10)
    assert email.pk in claim.suspects  # sent alone, as it should be
    outcomes = worker.deliveries_process(claim.lease_id, [email.pk])
    assert [o.status for o in outcomes] == ["skipped"]  # InProgressElsewhere
    # then: on the next claim it is still known as a suspect (sent alone, counted)
    _expire_leases()
    again = relay._claim(10)
    email.refresh_from_db()
    assert email.pk in again.suspects, (email.attempts, email.started_lease_id)
