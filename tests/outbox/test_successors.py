"""A worker sends on the next event of each aggregate it has handled, at its commit."""

import dataclasses
import threading

import pytest
from django.db import connection, transaction

from outbox import delivery, relay
from outbox.delivery import deliveries_process
from outbox.models import Delivery
from outbox.services import events_record
from tests.probe.events import ProbeHappened

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def published(monkeypatch):
    """What the worker's relay publishes; commits neither dispatch nor wake a drain."""
    sent: list[list[tuple[int, str]]] = []
    monkeypatch.setattr(
        relay, "deliveries_publish", lambda lease, rows, suspects=(): sent.append(rows)
    )
    monkeypatch.setattr(relay, "deliveries_dispatch", lambda *args: None)
    monkeypatch.setattr(relay, "relay_wake", lambda: None)
    return sent


def _claimed_ids(*events: ProbeHappened) -> tuple[str, list[int]]:
    with transaction.atomic():
        events_record(list(events))
    lease_id, rows = relay.deliveries_claim(50)
    return lease_id, [pk for pk, _ in rows]


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


def test_an_event_recorded_while_its_predecessor_is_handled_is_sent_on(
    no_wake_up, published, monkeypatch
):
    # given: one event claimed; while its first handler runs, another transaction
    # records the aggregate's next event and commits (it sees the first unfinished,
    # so it leases nothing, and no drain will run)
    lease_id, ids = _claimed_ids(ProbeHappened(aggregate="a", seq=1))
    plain = delivery.get_handler
    recorded = threading.Event()

    def record_the_next_one() -> None:
        try:
            with transaction.atomic():
                events_record([ProbeHappened(aggregate="a", seq=2)])
        finally:
            connection.close()

    def handler_meanwhile(name: str):
        handler = plain(name)

        def func(event, context):
            if not recorded.is_set():
                recorded.set()
                other = threading.Thread(target=record_the_next_one)
                other.start()
                other.join()
            handler.func(event, context)

        return dataclasses.replace(handler, func=func)

    monkeypatch.setattr(delivery, "get_handler", handler_meanwhile)
    # when
    deliveries_process(lease_id, ids)
    # then: once the first is done, the worker sends the second on
    second = Delivery.objects.filter(event__payload__seq=2)
    assert second.count() == len(ids)
    assert sorted(pk for rows in published for pk, _ in rows) == sorted(
        second.values_list("id", flat=True)
    )
