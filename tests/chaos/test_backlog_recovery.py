"""What the chaos test found: a broker backlog longer than a lease must not stop the shop.

In this process, without workers: the relay's and the worker's side of a
message that waited in the broker longer than its lease.
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
