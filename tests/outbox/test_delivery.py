"""The worker side: one effect per delivery; dead letters block only their own aggregate."""

import pytest

from outbox import relay
from outbox.models import Delivery
from outbox.services import deliveries_requeue
from outbox.tasks import deliver
from tests.conftest import wait_until
from tests.probe.events import ProbeHappened
from tests.probe.models import ProbeSwitch
from tests.probe.scenarios import (
    effect_counts,
    expected_effects,
    probes_record,
    seqs_by_aggregate,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_delivery_published_three_times_has_exactly_one_effect(settings, start_worker):
    # given: three pool processes, and a handler slow enough for the copies to overlap
    settings.OUTBOX_WAKE_ON_COMMIT = False
    worker = start_worker(concurrency=3)
    rows = probes_record([ProbeHappened(aggregate="a1", seq=1, delay_ms=400)])
    lease_id, claimed = relay.deliveries_claim(10)
    ids = [pk for pk, _ in claimed]
    # when
    for _ in range(3):
        deliver.apply_async(args=(lease_id, ids))
    # then
    assert wait_until(lambda: worker.tasks_succeeded("outbox.deliver") == 3, timeout=20)
    assert effect_counts() == expected_effects(rows)
    assert list(Delivery.objects.values_list("status", "attempts")) == [("done", 1)] * 2


def test_a_failing_event_is_dead_lettered_blocks_only_its_aggregate_and_can_be_requeued(
    start_worker,
):
    # given: probe.record fails a1's first event until the switch is removed,
    # and b1's second event fails twice, then succeeds
    ProbeSwitch.objects.create(name="broken", handler="probe.record")
    start_worker(beat=True)
    # when
    probes_record([
        ProbeHappened(aggregate="a1", seq=1, fail_while="broken"),
        ProbeHappened(aggregate="a1", seq=2),
        ProbeHappened(aggregate="b1", seq=1),
        ProbeHappened(aggregate="b1", seq=2, fail_times=2),
        ProbeHappened(aggregate="b1", seq=3),
    ])  # fmt: skip
    # then: dead after max_attempts=4, with the error and where it happened
    dead = Delivery.objects.filter(handler="probe.record", aggregate_key="probe:a1").first()
    assert wait_until(lambda: Delivery.objects.get(pk=dead.pk).status == "dead", timeout=30)
    dead.refresh_from_db()
    assert dead.attempts == 4
    assert dead.last_error == "RuntimeError: probe switch 'broken' is on"
    assert "tests/probe/handlers.py" in dead.last_traceback
    # and every other aggregate, and the other handler, went on
    others = {
        "probe.projection": {"a1": [1, 2], "b1": [1, 2, 3]},
        "probe.record": {"b1": [1, 2, 3]},
    }
    wait_until(lambda: {h: seqs_by_aggregate(h) for h in others} == others, timeout=20)
    assert {h: seqs_by_aggregate(h) for h in others} == others
    retried = Delivery.objects.get(
        handler="probe.record", aggregate_key="probe:b1", event__payload__seq=2
    )
    assert (retried.status, retried.attempts) == ("done", 3)
    # while a1's later event waits behind the dead letter, untried
    waiting = Delivery.objects.get(
        handler="probe.record", aggregate_key="probe:a1", event__payload__seq=2
    )
    assert (waiting.status, waiting.attempts) == ("pending", 0)

    # when: the cause is fixed and the dead letter requeued
    ProbeSwitch.objects.all().delete()
    assert deliveries_requeue(ids=[dead.pk]) == 1
    # then: it succeeds, and a1 resumes in order
    wait_until(lambda: seqs_by_aggregate("probe.record").get("a1") == [1, 2], timeout=20)
    assert seqs_by_aggregate("probe.record").get("a1") == [1, 2]
    dead.refresh_from_db()
    assert (dead.status, dead.attempts) == ("done", 1)
    assert not Delivery.objects.exclude(status="done").exists()
