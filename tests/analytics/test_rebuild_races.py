"""A rebuild gives the figures of a fresh projection, whatever deliveries run beside it."""

import threading
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction

from analytics import handlers, services
from analytics.models import DailySales
from analytics.services import analytics_rebuild
from outbox.models import OutboxEvent
from outbox.services import events_record
from payments.events import PaymentCaptured
from tests.analytics.pump import deliveries_run
from tests.conftest import run_concurrently
from tests.outbox.test_purge_races import in_turn

pytestmark = pytest.mark.django_db(transaction=True)


def captured(amount: str, days_ago: int) -> OutboxEvent:
    """A recorded `payment.captured` of `days_ago` days ago (only the projection takes it)."""
    event = PaymentCaptured(
        order_id=uuid.uuid4(), amount=Decimal(amount), currency="USD", provider_ref="ch"
    )
    with transaction.atomic():
        [row] = events_record([event])
    row.occurred_at -= timedelta(days=days_ago)
    OutboxEvent.objects.filter(pk=row.pk).update(occurred_at=row.occurred_at)
    return row


def figures() -> list[tuple]:
    return list(DailySales.objects.order_by("date").values_list("date", "gross_revenue"))


def fresh_projection() -> list[tuple]:
    """The figures a rebuild gives with nothing running beside it."""
    analytics_rebuild()
    deliveries_run()
    return figures()


def test_a_rebuild_while_a_delivery_creates_a_new_days_row_counts_that_event_once(
    no_wake_up, monkeypatch
):
    # given: yesterday is projected; today's first event is being handled
    captured("10.00", days_ago=1)
    deliveries_run()
    captured("2.50", days_ago=0)
    written, resumed = threading.Event(), threading.Event()
    add = handlers.daily_sales_add

    def add_then_pause(**kwargs: object) -> None:
        add(**kwargs)
        if not written.is_set():  # only the live delivery pauses, not the replayed ones
            written.set()
            resumed.wait(timeout=2)  # a rebuild that waits for this transaction never resumes it

    reset = services.daily_sales_reset

    def reset_then_resume() -> int:
        deleted = reset()
        resumed.set()
        # The live delivery commits its new row now, before the rebuild's replay reads.
        threading.Event().wait(0.5)
        return deleted

    monkeypatch.setattr(handlers, "daily_sales_add", add_then_pause)
    monkeypatch.setattr(services, "daily_sales_reset", reset_then_resume)

    def deliver() -> None:
        deliveries_run()

    def rebuild_once_the_row_is_written() -> None:
        written.wait(timeout=10)
        analytics_rebuild()

    # when
    run_concurrently(2, in_turn(deliver, rebuild_once_the_row_is_written))
    deliveries_run()
    rebuilt = figures()
    # then
    monkeypatch.undo()
    assert [revenue for _, revenue in rebuilt] == [Decimal("10.00"), Decimal("2.50")]
    assert rebuilt == fresh_projection()
