"""The claim keeps one send per event when senders race, and costs three statements in all."""

import time
import uuid

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.models import Notification
from notifications.services import notification_send
from outbox.delivery import InProgressElsewhere
from tests.conftest import run_concurrently
from tests.notifications.factories import PaymentFactory, ShipmentFactory, order_made

pytestmark = pytest.mark.django_db(transaction=True)

# Measured on the change that set them (8 statements in one transaction and five
# autocommits before it): the claim, the read of the order and the record.
SEND_STATEMENTS = 3
SEND_TRANSACTIONS = 0  # each statement commits on its own; none is open across the send


class SlowSmtp(EmailBackend):
    """The locmem backend behind a server that takes a while to accept."""

    def send_messages(self, messages):  # type: ignore[no-untyped-def]
        time.sleep(0.3)
        return super().send_messages(messages)


def test_senders_racing_for_one_event_send_one_email(settings):
    # given: five workers handed the same event at once (no outbox in between)
    settings.EMAIL_BACKEND = f"{__name__}.SlowSmtp"
    order = order_made(status="confirmed", customer__email="ada@example.com")
    event_id = uuid.uuid4()

    def send() -> str:
        try:
            return notification_send(
                event_id=event_id, kind="confirmed", order_id=order.id, attempt=1
            )
        except InProgressElsewhere:
            return "in progress elsewhere"

    # when
    outcomes = run_concurrently(5, send)
    # then: one sent it; the others met its claim, or its record once it was sent
    assert len(mail.outbox) == 1
    assert set(outcomes) <= {"sent", "in progress elsewhere"}
    note = Notification.objects.get()
    assert (note.status, note.attempts, note.claimed_until) == ("sent", 1, None)


def test_an_email_costs_three_statements_and_holds_no_transaction(settings):
    # given: an order with several lines, a payment and a shipment, all shown in the e-mail
    order = order_made(status="shipped", customer__email="ada@example.com")
    PaymentFactory(order_id=order.id, amount=order.total)
    ShipmentFactory(order_id=order.id, tracking_number="TRK-7Q2X")
    # when
    with CaptureQueriesContext(connection) as queries:
        status = notification_send(
            event_id=uuid.uuid4(), kind="shipped", order_id=order.id, attempt=1
        )
    # then
    sent = [q["sql"] for q in queries.captured_queries]
    assert status == "sent"
    assert "TRK-7Q2X" in mail.outbox[0].body
    statements = [sql for sql in sent if sql not in ("BEGIN", "COMMIT")]
    assert len(statements) <= SEND_STATEMENTS, "\n".join(statements)
    assert sent.count("BEGIN") <= SEND_TRANSACTIONS
    assert not any(sql.startswith("SAVEPOINT") for sql in sent)
