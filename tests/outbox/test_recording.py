"""Events are written with the change that raised them, or not at all."""

import pytest
from django.core.cache import cache
from django.db import transaction

from outbox.models import Delivery, OutboxEvent
from outbox.relay import WAKE_KEY
from outbox.services import OutsideTransaction, events_record
from tests.probe.events import ProbeHappened
from tests.probe.models import ProbeAggregate
from tests.probe.scenarios import HANDLERS

pytestmark = pytest.mark.django_db(transaction=True)


class Boom(Exception):
    pass


@pytest.fixture(autouse=True)
def _no_wake_ups(settings):
    # Nothing here needs a worker; keep drain messages off the shared broker db.
    settings.OUTBOX_WAKE_ON_COMMIT = False


def test_saving_an_event_source_records_its_events_and_a_delivery_per_handler():
    # given
    aggregate = ProbeAggregate(name="a1")
    aggregate.happen()
    aggregate.happen()
    # when
    with transaction.atomic():
        aggregate.save()
    # then
    rows = list(OutboxEvent.objects.values_list("type", "aggregate_id", "payload"))
    assert [(t, a, p["seq"]) for t, a, p in rows] == [
        ("probe.happened", "a1", 1),
        ("probe.happened", "a1", 2),
    ]
    assert sorted(Delivery.objects.values_list("handler", flat=True)) == sorted(HANDLERS * 2)
    assert set(Delivery.objects.values_list("aggregate_key", flat=True)) == {"probe:a1"}
    assert not aggregate.has_pending_events()


def test_events_recorded_together_get_ids_in_order_and_deliveries_by_event_then_handler():
    # given three events about two aggregates
    events = [ProbeHappened(aggregate=a, seq=n) for n, a in enumerate(["a1", "a2", "a1"])]
    # when
    with transaction.atomic():
        rows = events_record(events)
    # then the returned rows are the saved ones, in the order given
    stored = list(OutboxEvent.objects.order_by("id"))
    assert [row.pk for row in rows] == [row.pk for row in stored]
    assert [row.event_id for row in rows] == [row.event_id for row in stored]
    assert [row.payload["seq"] for row in stored] == [0, 1, 2]
    assert all(not row._state.adding and row.created_at for row in rows)
    # and the deliveries' ids follow the events, then the handlers by name
    deliveries = list(Delivery.objects.order_by("id").values_list("event_id", "handler"))
    assert deliveries == [(row.pk, handler) for row in rows for handler in sorted(HANDLERS)]
    assert Delivery.objects.filter(
        status=Delivery.Status.PENDING, attempts=0, next_attempt_at=rows[0].occurred_at
    ).count() == len(deliveries)


def test_a_rolled_back_transaction_leaves_no_event_no_delivery_and_no_wake_up(
    settings, redis_client
):
    # given: a wake-up would be sent, were the transaction to commit
    settings.OUTBOX_WAKE_ON_COMMIT = True
    cache.delete(WAKE_KEY)
    aggregate = ProbeAggregate(name="a1")
    aggregate.happen()
    queued_before = redis_client.llen("outbox")
    # when
    with pytest.raises(Boom), transaction.atomic():
        aggregate.save()
        events_record([ProbeHappened(aggregate="a2", seq=1)])
        raise Boom
    # then
    assert not ProbeAggregate.objects.exists()
    assert not OutboxEvent.objects.exists()
    assert not Delivery.objects.exists()
    assert redis_client.llen("outbox") == queued_before


def test_a_rolled_back_savepoint_takes_its_events_but_not_the_outer_ones():
    # given / when
    with transaction.atomic():
        events_record([ProbeHappened(aggregate="kept", seq=1)])
        with pytest.raises(Boom), transaction.atomic():
            events_record([ProbeHappened(aggregate="lost", seq=1)])
            raise Boom
    # then
    assert list(OutboxEvent.objects.values_list("aggregate_id", flat=True)) == ["kept"]
    assert set(Delivery.objects.values_list("aggregate_key", flat=True)) == {"probe:kept"}


def test_recording_an_event_outside_a_transaction_raises_at_once():
    # when
    with pytest.raises(OutsideTransaction):
        events_record([ProbeHappened(aggregate="a1", seq=1)])
    # then
    assert not OutboxEvent.objects.exists()
    assert not Delivery.objects.exists()


def test_saving_a_model_with_pending_events_outside_a_transaction_is_refused_before_writing():
    # given
    aggregate = ProbeAggregate(name="a1")
    aggregate.happen()
    # when
    with pytest.raises(OutsideTransaction):
        aggregate.save()
    # then: neither the row nor its events were written, and the events wait
    assert not ProbeAggregate.objects.exists()
    assert not OutboxEvent.objects.exists()
    assert aggregate.has_pending_events()


def test_saving_a_model_without_pending_events_outside_a_transaction_is_allowed():
    # when
    ProbeAggregate.objects.create(name="quiet")
    # then
    assert ProbeAggregate.objects.filter(name="quiet").exists()
    assert not OutboxEvent.objects.exists()
