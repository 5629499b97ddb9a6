"""A worker sends on the next event of an aggregate it has handled, and only when there is one."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from outbox import relay
from outbox.delivery import deliveries_process
from outbox.models import Delivery
from outbox.services import events_record
from tests.probe.events import ProbeHappened

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def published(monkeypatch):
    sent: list[list[tuple[int, str]]] = []
    monkeypatch.setattr(
        relay, "deliveries_publish", lambda lease, rows, suspects=(): sent.append(rows)
    )
    return sent


def _claimed_ids(*events: ProbeHappened) -> tuple[str, list[int]]:
    with transaction.atomic():
        events_record(list(events))
    lease_id, rows = relay.deliveries_claim(50)
    return lease_id, [pk for pk, _ in rows]


def test_the_last_event_of_an_aggregate_asks_for_no_successor_claim(no_wake_up, published):
    # given
    lease_id, ids = _claimed_ids(ProbeHappened(aggregate="a", seq=1))
    # when
    with CaptureQueriesContext(connection) as queries:
        outcomes = deliveries_process(lease_id, ids)
    # then: handled, and no claim statement ran
    assert [o.status for o in outcomes] == ["done", "done"]
    assert not [q for q in queries if "SKIP LOCKED" in q["sql"]]
    assert published == []


def test_an_event_followed_by_a_pending_one_sends_that_one_on(no_wake_up, published):
    # given: two events of one aggregate; only the first is claimable
    lease_id, ids = _claimed_ids(
        ProbeHappened(aggregate="a", seq=1), ProbeHappened(aggregate="a", seq=2)
    )
    # when
    deliveries_process(lease_id, ids)
    # then: the second event's deliveries are claimed and published
    second = Delivery.objects.filter(event__payload__seq=2)
    assert sorted(pk for rows in published for pk, _ in rows) == sorted(
        second.values_list("id", flat=True)
    )
    assert all(d.lease_id is not None for d in second)
