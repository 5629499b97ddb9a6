"""Due times, leases and backoffs come from the database's clock, not each host's."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection, transaction
from django.utils import timezone

from outbox import relay
from outbox.delivery import Outcome, deliveries_process
from outbox.models import Delivery
from outbox.services import events_record
from tests.probe.events import ProbeHappened
from tests.probe.models import ProbeRecord
from tests.probe.scenarios import probes_record

pytestmark = pytest.mark.django_db(transaction=True)

AHEAD = timedelta(minutes=2)


@pytest.fixture(autouse=True)
def _in_this_process(no_wake_up, monkeypatch):
    # Deliveries are claimed and handled here, by hand; nothing goes to a broker.
    monkeypatch.setattr(relay, "successors_relay", lambda keys: 0)


@contextmanager
def clock_ahead(by: timedelta) -> Iterator[None]:
    """This process's clock runs `by` ahead of the database's (a host whose NTP drifted)."""
    real_now = timezone.now
    with mock.patch("django.utils.timezone.now", lambda: real_now() + by):
        yield


def database_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


def deliver_due() -> list[Outcome]:
    lease_id, rows = relay.deliveries_claim(100)
    return deliveries_process(lease_id, [pk for pk, _ in rows])


def test_an_event_recorded_on_a_host_whose_clock_is_ahead_is_delivered_at_once():
    # given: the web host's clock is two minutes ahead
    with clock_ahead(AHEAD), transaction.atomic():
        [row] = events_record([ProbeHappened(aggregate="a1", seq=1)])
    # when: a worker with the right time drains
    outcomes = deliver_due()
    # then
    assert [o.status for o in outcomes] == ["done", "done"]
    assert ProbeRecord.objects.count() == 2
    # and the event's time, which the order timeline shows, is the database's
    assert abs(row.occurred_at - database_now()) < timedelta(seconds=10)


def test_a_drain_whose_clock_is_ahead_by_more_than_a_lease_leaves_a_live_lease_alone(settings):
    # given: a delivery leased a moment ago
    probes_record([ProbeHappened(aggregate="a1", seq=1)])
    _, first = relay.deliveries_claim(10)
    # when: a relay whose clock is ten leases ahead claims
    with clock_ahead(timedelta(seconds=10 * settings.OUTBOX_LEASE_SECONDS)):
        _, second = relay.deliveries_claim(10)
    # then
    assert len(first) == 2
    assert second == []


def test_a_worker_whose_clock_is_ahead_schedules_retries_and_marks_done_by_the_database_clock(
    settings,
):
    # given: both probe handlers fail their first attempt
    probes_record([ProbeHappened(aggregate="a1", seq=1, fail_times=1)])
    # when: a worker two minutes ahead handles them
    with clock_ahead(AHEAD):
        outcomes = deliver_due()
    # then: the retries are due after the backoff, not after the backoff and two minutes
    assert [o.status for o in outcomes] == ["retry", "retry"]
    latest = database_now() + timedelta(seconds=settings.OUTBOX_BACKOFF_MAX)
    assert all(d.next_attempt_at <= latest for d in Delivery.objects.all())
    # and what it marks done carries the database's time
    Delivery.objects.update(next_attempt_at=database_now())
    with clock_ahead(AHEAD):
        outcomes = deliver_due()
    assert [o.status for o in outcomes] == ["done", "done"]
    assert all(d.done_at <= database_now() for d in Delivery.objects.all())


def test_a_later_instant_as_raw_sql_is_a_time_on_sqlite_too(monkeypatch):
    # given: the embedded default's database
    from datetime import datetime, timedelta

    from django.db.utils import ConnectionHandler

    from shopflow import clock

    sqlite = ConnectionHandler(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    )["default"]
    monkeypatch.setattr(clock, "connection", sqlite)
    clock._later_sql.cache_clear()
    try:
        # when
        sql, params = clock.db_later_sql(30)
        with sqlite.cursor() as cursor:
            cursor.execute(f"SELECT {sql}, {clock.db_now_sql()}", params)
            later, now = cursor.fetchone()
    finally:
        clock._later_sql.cache_clear()
        sqlite.close()
    # then: 30 s after the database's now, as a timestamp SQLite compares as text
    assert isinstance(later, str)
    assert datetime.fromisoformat(later) - datetime.fromisoformat(now) == timedelta(seconds=30)
