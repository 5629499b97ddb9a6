"""Real workers e-mail through a real SMTP server: once, after retries, or dead-lettered."""

import pytest

from analytics.models import DailySales
from notifications.models import Notification
from orders.events import OrderConfirmed
from outbox import relay
from outbox.models import Delivery
from outbox.tasks import deliver
from tests.conftest import wait_until
from tests.notifications.factories import event_recorded, order_made

pytestmark = pytest.mark.django_db(transaction=True)

HANDLER = "notifications.email_customer"


def email_delivery():
    return Delivery.objects.get(handler=HANDLER)


def test_a_delivery_published_three_times_sends_one_email(settings, start_worker, smtp_server):
    # given: three pool processes, and a server slow enough to accept for the copies to overlap
    settings.OUTBOX_WAKE_ON_COMMIT = False
    smtp_server.data_delay = 0.4
    worker = start_worker(concurrency=3, SHOPFLOW_TEST_EMAIL_URL=smtp_server.url)
    order = order_made(status="confirmed", customer__email="ada@example.com")
    event_recorded(OrderConfirmed(order_id=order.id))
    lease_id, claimed = relay.deliveries_claim(10)
    ids = [pk for pk, _ in claimed]
    # when
    for _ in range(3):
        deliver.apply_async(args=(lease_id, ids), queue="notifications")
    # then
    assert wait_until(lambda: worker.tasks_succeeded("outbox.deliver") == 3, timeout=20)
    assert [m["To"] for m in smtp_server.messages] == ["ada@example.com"]
    note = Notification.objects.get()
    assert (note.status, note.attempts) == ("sent", 1)
    assert set(Delivery.objects.values_list("status", "attempts")) == {("done", 1)}
    assert DailySales.objects.get().orders_confirmed == 1


def test_an_email_refused_for_a_while_arrives_once_after_the_retries(start_worker, smtp_server):
    # given: the server answers 451 to every recipient until told otherwise
    smtp_server.refusing = True
    start_worker(beat=True, SHOPFLOW_TEST_EMAIL_URL=smtp_server.url, OUTBOX_MAX_ATTEMPTS="50")
    order = order_made(status="confirmed", customer__email="ada@example.com")
    # when
    event_recorded(OrderConfirmed(order_id=order.id))
    # then: meanwhile the record shows the failure, and the delivery waits for its retry
    assert wait_until(
        lambda: Notification.objects.filter(status="failed", attempts__gte=2).exists(), timeout=20
    )
    failing = Notification.objects.get()
    assert failing.error.startswith("SMTPRecipientsRefused")
    assert "451" in failing.error
    assert failing.sent_at is None
    assert email_delivery().status == "pending"
    # when: the server accepts mail again
    smtp_server.refusing = False
    # then
    assert wait_until(lambda: Notification.objects.filter(status="sent").exists(), timeout=20)
    (message,) = smtp_server.messages
    assert order.number in message["Subject"]
    assert message["To"] == "ada@example.com"
    assert message.get_content_type() == "multipart/alternative"
    kinds = [part.get_content_type() for part in message.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    assert "Total: 24.40 USD" in message.get_body(("plain",)).get_content()
    sent, delivery = Notification.objects.get(), email_delivery()
    assert (sent.status, sent.error) == ("sent", "")
    assert sent.attempts == delivery.attempts == smtp_server.refused + 1
    assert delivery.status == "done"


def test_an_email_the_server_keeps_refusing_is_dead_lettered_and_shown_failed(
    start_worker, smtp_server
):
    # given
    smtp_server.refusing = True
    start_worker(beat=True, SHOPFLOW_TEST_EMAIL_URL=smtp_server.url, OUTBOX_MAX_ATTEMPTS="3")
    order = order_made(status="confirmed", customer__email="eve@example.com")
    # when
    event_recorded(OrderConfirmed(order_id=order.id))
    # then
    assert wait_until(lambda: email_delivery().status == "dead", timeout=30)
    dead = email_delivery()
    assert dead.attempts == 3
    assert "451" in dead.last_error
    assert wait_until(lambda: Notification.objects.filter(attempts=3).exists(), timeout=5)
    note = Notification.objects.get()
    assert (note.status, note.sent_at, note.recipient) == ("failed", None, "eve@example.com")
    assert "451" in note.error
    assert note.error.endswith("(gave up)")
    assert smtp_server.messages == []
    assert smtp_server.refused == 3
    # and the daily sales of the same event went on
    assert Delivery.objects.get(handler="analytics.daily_sales").status == "done"
