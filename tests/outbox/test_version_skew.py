"""During a rolling deploy an older worker retries what only newer code can read."""

import time

import pytest
from django.db import transaction

from outbox import relay
from outbox.delivery import deliveries_process
from outbox.models import Delivery
from outbox.registry import subscribe, unsubscribe
from outbox.services import events_record
from tests.probe.events import ProbeHappened

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _in_this_process(no_wake_up, monkeypatch):
    monkeypatch.setattr(relay, "successors_relay", lambda keys: 0)


def deliver_due() -> list[str]:
    lease_id, rows = relay.deliveries_claim(100)
    return [o.status for o in deliveries_process(lease_id, [pk for pk, _ in rows])]


def test_a_delivery_for_a_handler_this_worker_does_not_know_yet_is_retried_until_it_does(
    settings,
):
    # given: a newer process recorded a delivery for a handler this one lacks
    with transaction.atomic():
        [row] = events_record([ProbeHappened(aggregate="a1", seq=1)])
        skewed = Delivery.objects.create(
            event=row, handler="probe.newer", aggregate_key="probe:a1",
            next_attempt_at=row.occurred_at,
        )  # fmt: skip
    # when
    assert sorted(deliver_due()) == ["done", "done", "retry"]
    # then: it waits out a backoff, counted, with the reason; the aggregate is not dead
    skewed.refresh_from_db()
    assert (skewed.status, skewed.attempts) == ("pending", 1)
    assert skewed.last_error == "UnknownHandler: no handler named 'probe.newer' is registered"
    # when: the new code reaches this worker too
    handled = []
    subscribe(ProbeHappened, name="probe.newer")(lambda event, context: handled.append(event))
    try:
        time.sleep(settings.OUTBOX_BACKOFF_MAX)
        assert deliver_due() == ["done"]
    finally:
        unsubscribe("probe.newer")
    # then
    skewed.refresh_from_db()
    assert (skewed.status, skewed.attempts) == ("done", 2)
    assert handled == [ProbeHappened(aggregate="a1", seq=1)]
