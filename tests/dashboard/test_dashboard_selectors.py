"""The selectors the dashboard reads: per-minute throughput and status counts."""

from datetime import timedelta

import pytest
from django.utils import timezone

from orders.selectors import order_status_counts
from outbox.selectors import deliveries_done_per_minute, deliveries_done_since
from sagas.selectors import saga_status_counts
from tests.dashboard.factories import SagaFactory, deliveries_done, order_created, probe_recorded

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_wake_up(settings):
    settings.OUTBOX_WAKE_ON_COMMIT = False


def test_deliveries_are_counted_in_the_clock_minute_they_were_done():
    # given
    now = timezone.now().replace(second=30, microsecond=0)
    deliveries_done(probe_recorded("a"), at=now - timedelta(seconds=10))  # this minute: 2
    deliveries_done(probe_recorded("b"), at=now - timedelta(seconds=40), handler="probe.record")
    deliveries_done(probe_recorded("c"), at=now - timedelta(minutes=3))  # 3 minutes ago: 2
    deliveries_done(probe_recorded("d"), at=now - timedelta(minutes=4))  # before the window
    # when
    per_minute = deliveries_done_per_minute(minutes=4, now=now)
    # then
    this_minute = now.replace(second=0)
    assert per_minute == [
        (this_minute - timedelta(minutes=3), 2),
        (this_minute - timedelta(minutes=2), 0),
        (this_minute - timedelta(minutes=1), 1),
        (this_minute, 2),
    ]
    assert deliveries_done_since(now - timedelta(seconds=60)) == 3


def test_order_status_counts_only_orders_placed_since_and_lists_every_status():
    # given
    now = timezone.now()
    order_created("failed", at=now - timedelta(minutes=59))
    order_created("failed", at=now - timedelta(minutes=61))
    # when
    counts = order_status_counts(since=now - timedelta(hours=1))
    # then
    assert counts == {"pending": 0, "confirmed": 0, "shipped": 0, "delivered": 0,
                      "cancelled": 0, "failed": 1}  # fmt: skip


def test_saga_status_counts_every_status():
    # given
    SagaFactory.create_batch(2, status="compensation_failed")
    SagaFactory(status="running")
    # when
    counts = saga_status_counts()
    # then
    assert counts == {"running": 1, "completed": 0, "compensating": 0, "compensated": 0,
                      "compensation_failed": 2}  # fmt: skip
