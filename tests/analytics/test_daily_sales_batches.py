"""analytics.daily_sales in batches: one message's deliveries in one transaction, each once."""

import uuid
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum

from analytics.handlers import HANDLER_NAME
from analytics.models import DailySales
from outbox.models import Delivery
from outbox.services import events_record
from outbox.tasks import deliver
from payments.events import PaymentCaptured, PaymentRefunded
from shopflow.clock import db_later
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# A capture the projection cannot count: gross_revenue is numeric(16, 2).
TOO_LARGE = "100000000000000.00"


def captured(amount: str) -> PaymentCaptured:
    return PaymentCaptured(
        order_id=uuid.uuid4(), amount=Decimal(amount), currency="USD", provider_ref="ch"
    )


def refunded(amount: str) -> PaymentRefunded:
    return PaymentRefunded(
        order_id=uuid.uuid4(), amount=Decimal(amount), currency="USD", refund_ref="re"
    )


def in_one_message(*events: PaymentCaptured | PaymentRefunded) -> tuple[str, list[int]]:
    """Record `events` and lease their daily-sales deliveries to one claim, as a drain does."""
    lease_id = uuid.uuid4()
    with transaction.atomic():
        rows = events_record(list(events))
        deliveries = Delivery.objects.filter(event__in=rows, handler=HANDLER_NAME)
        deliveries.update(
            lease_id=lease_id, lease_expires_at=db_later(settings.OUTBOX_LEASE_SECONDS)
        )
        return str(lease_id), list(deliveries.order_by("id").values_list("id", flat=True))


def money() -> tuple[Decimal, Decimal]:
    """Gross revenue and refunds over every day (a run may cross midnight UTC)."""
    sums = DailySales.objects.aggregate(gross=Sum("gross_revenue"), refunds=Sum("refunds"))
    return sums["gross"] or Decimal("0"), sums["refunds"] or Decimal("0")


def writers(ids: list[int]) -> set[str]:
    """The transactions that last wrote these deliveries and the projection's rows (xmin)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT xmin::text FROM {Delivery._meta.db_table} WHERE id = ANY(%s) "
            f"UNION SELECT xmin::text FROM {DailySales._meta.db_table}",
            [ids],
        )
        return {row[0] for row in cursor.fetchall()}


def finished(ids: list[int]) -> bool:
    return not Delivery.objects.filter(pk__in=ids, status="pending").exists()


def test_a_message_of_daily_sales_deliveries_is_counted_once_each_in_one_transaction(
    no_wake_up, start_worker
):
    # given
    worker = start_worker()
    lease_id, ids = in_one_message(
        *(captured("1.50") for _ in range(10)), *(refunded("0.25") for _ in range(4))
    )
    # when: the fourteen deliveries travel in one message
    deliver.apply_async(args=(lease_id, ids))
    # then: each counted once, on its first attempt
    assert wait_until(lambda: finished(ids), timeout=20), worker.log_tail()
    assert money() == (Decimal("15.00"), Decimal("1.00"))
    deliveries = Delivery.objects.filter(pk__in=ids)
    assert {(d.status, d.attempts) for d in deliveries} == {("done", 1)}
    # and by one flip statement, in the one transaction that wrote the projection
    assert len({d.done_at for d in deliveries}) == 1
    assert len(writers(ids)) == 1


def test_a_daily_sales_event_that_cannot_be_counted_fails_alone_in_its_batch(
    no_wake_up, start_worker
):
    # given: a capture too large for the projection, in one message with four it can count
    worker = start_worker(beat=True, OUTBOX_MAX_ATTEMPTS="3")
    lease_id, ids = in_one_message(captured(TOO_LARGE), *(captured("2.00") for _ in range(4)))
    poison, healthy = ids[0], ids[1:]
    # when
    deliver.apply_async(args=(lease_id, ids))
    # then: the four are counted once, on their first attempt, after the batch was tried
    assert wait_until(lambda: finished(healthy), timeout=20), worker.log_tail()
    assert money() == (Decimal("8.00"), Decimal("0"))
    assert {(d.status, d.attempts) for d in Delivery.objects.filter(pk__in=healthy)} == {
        ("done", 1)
    }
    assert "a batch of 5 deliveries failed" in worker.log.read_text()
    # and the poison alone retries until it is a dead letter
    assert wait_until(lambda: finished([poison]), timeout=30), worker.log_tail()
    dead = Delivery.objects.get(pk=poison)
    assert (dead.status, dead.attempts) == ("dead", 3)
    assert "numeric field overflow" in dead.last_error
    assert money() == (Decimal("8.00"), Decimal("0"))


def test_a_duplicate_message_of_a_daily_sales_batch_counts_nothing_twice(no_wake_up, start_worker):
    # given: three pool processes
    worker = start_worker(concurrency=3)
    lease_id, ids = in_one_message(*(captured("3.00") for _ in range(20)))
    # when: the batch's message arrives three times at once
    for _ in range(3):
        deliver.apply_async(args=(lease_id, ids))
    assert wait_until(lambda: worker.tasks_succeeded("outbox.deliver") == 3, timeout=20), (
        worker.log_tail()
    )
    handled = list(Delivery.objects.order_by("id").values_list("status", "attempts", "done_at"))
    # and once more after the batch is done
    deliver.apply_async(args=(lease_id, ids))
    assert wait_until(lambda: worker.tasks_succeeded("outbox.deliver") == 4, timeout=20)
    # then: each capture was counted once, and the late copy changed nothing
    assert money() == (Decimal("60.00"), Decimal("0"))
    assert [(s, a) for s, a, _ in handled] == [("done", 1)] * 20
    assert list(Delivery.objects.order_by("id").values_list("status", "attempts", "done_at")) == (
        handled
    )
