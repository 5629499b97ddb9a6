"""A send slower than the outbox lease keeps its delivery: sent once, nobody called dead."""

import threading
import time

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connection

from notifications.models import Notification
from orders.events import OrderConfirmed
from outbox.models import Delivery
from tests.analytics.pump import deliveries_run
from tests.notifications.factories import event_recorded, order_made

pytestmark = pytest.mark.django_db(transaction=True)


class SlowSmtp(EmailBackend):
    """The locmem backend behind a slow SMTP server (still inside EMAIL_TIMEOUT per op)."""

    def send_messages(self, messages):  # type: ignore[no-untyped-def]
        time.sleep(2.0)
        return super().send_messages(messages)


def test_a_slow_send_is_not_sent_again_by_the_next_claim(settings, no_wake_up):
    settings.EMAIL_BACKEND = f"{__name__}.SlowSmtp"
    settings.OUTBOX_LEASE_SECONDS = 1.0
    order = order_made(status="confirmed", customer__email="ada@example.com")
    event_recorded(OrderConfirmed(order_id=order.id))

    def first_worker() -> None:
        try:
            deliveries_run()
        finally:
            connection.close()

    worker = threading.Thread(target=first_worker)
    worker.start()
    time.sleep(1.3)  # the first send is still talking to the server; its lease ran out
    deliveries_run()  # the relay's next drain and another worker
    worker.join()
    assert len(mail.outbox) == 1, [m.subject for m in mail.outbox]
    assert Notification.objects.get().status == "sent"
    assert Delivery.objects.get(handler="notifications.email_customer").status == "done"


def test_a_send_always_slower_than_the_lease_is_sent_once_and_not_called_a_dead_worker(
    settings, no_wake_up
):
    # given: every send takes 2 s, the lease is 1 s; drains and workers keep coming (beat)
    settings.EMAIL_BACKEND = f"{__name__}.SlowSmtp"
    settings.OUTBOX_LEASE_SECONDS = 1.0
    settings.OUTBOX_MAX_ATTEMPTS = 3
    order = order_made(status="confirmed", customer__email="ada@example.com")
    event_recorded(OrderConfirmed(order_id=order.id))
    delivery = Delivery.objects.none()

    def a_worker() -> None:
        try:
            deliveries_run()
        finally:
            connection.close()

    workers = []
    for _ in range(12):  # ~15 s of beat drains, each handed to a free worker
        worker = threading.Thread(target=a_worker)
        worker.start()
        workers.append(worker)
        time.sleep(1.25)
    for worker in workers:
        worker.join()
    delivery = Delivery.objects.get(handler="notifications.email_customer")
    assert (len(mail.outbox), delivery.status) == (1, "done"), delivery.last_error
