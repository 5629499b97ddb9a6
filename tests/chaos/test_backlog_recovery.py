"""What the chaos test found: a broker backlog longer than a lease must not stop the shop.

Both run in this process, without workers: the first is the relay's and the
worker's side of a message that waited longer than its lease, the second the
saga watchdog's answer to sagas whose asks sit in a queue.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from outbox import relay
from outbox.delivery import deliveries_process
from outbox.models import Delivery
from outbox.services import events_record
from sagas import tasks
from sagas.models import Saga
from tests.probe.events import ProbeHappened
from tests.probe.models import ProbeRecord

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_message_that_waited_past_its_lease_still_delivers_what_was_leased_again(settings):
    # given: a claimed event whose message waits while the lease runs out and a drain
    # leases it again (and publishes a second message, as far back in the queue)
    settings.OUTBOX_WAKE_ON_COMMIT = False
    with transaction.atomic():
        events_record([ProbeHappened(aggregate="a1", seq=1)])
    first_lease, rows = relay.deliveries_claim(10)
    Delivery.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    second_lease, again = relay.deliveries_claim(10)
    assert again == rows and second_lease != first_lease
    # when: the first message comes out of the queue
    outcomes = deliveries_process(first_lease, [pk for pk, _ in rows])
    # then: it does the work; the second message will find it done
    assert [o.status for o in outcomes] == ["done", "done"]
    assert ProbeRecord.objects.count() == 2
    assert deliveries_process(second_lease, [pk for pk, _ in rows]) == []


def test_a_delivery_waiting_out_its_backoff_is_left_to_its_next_claim(settings):
    # given: a claimed delivery whose attempt failed (no lease, due later)
    settings.OUTBOX_WAKE_ON_COMMIT = False
    with transaction.atomic():
        events_record([ProbeHappened(aggregate="a1", seq=1)])
    lease_id, rows = relay.deliveries_claim(10)
    Delivery.objects.update(lease_id=None, lease_expires_at=None, attempts=1)
    # when: a stale message of that claim arrives
    outcomes = deliveries_process(lease_id, [pk for pk, _ in rows])
    # then
    assert outcomes == []
    assert not ProbeRecord.objects.exists()


@pytest.mark.parametrize(
    ("waited", "asked_again_after"),
    [(0.5, 1.0), (10.0, 10.0), (500.0, 60.0)],
    ids=["just moved: the grace", "waited 10 s: 10 s more", "waited long: the ceiling"],
)
def test_the_watchdog_asks_again_no_sooner_than_the_saga_has_waited(
    settings, monkeypatch, waited, asked_again_after
):
    # given: a running saga, last moved `waited` seconds ago, due for a look
    settings.SAGA_WAKE_GRACE_SECONDS = 1.0
    settings.SAGA_WATCHDOG_MAX_WAIT_SECONDS = 60.0
    asked: list[str] = []
    monkeypatch.setattr(tasks.advance_saga, "delay", asked.append)
    saga = Saga.objects.create(definition="order_fulfilment", key="k1")
    now = timezone.now()
    Saga.objects.filter(pk=saga.pk).update(
        updated_at=now - timedelta(seconds=waited), wake_at=now - timedelta(seconds=0.1)
    )
    # when
    tasks.saga_watchdog()
    # then: asked once now, and the next look is as far off as it has waited (bounded)
    assert asked == [str(saga.pk)]
    wake_in = (Saga.objects.get(pk=saga.pk).wake_at - now).total_seconds()
    assert asked_again_after - 0.5 < wake_in < asked_again_after + 1.0
