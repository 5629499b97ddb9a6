"""Direct dispatch: a transaction's deliveries are leased to it and published when it commits."""

import os
import random
import time
import uuid

import pytest
from django.db import transaction
from django.utils import timezone

from outbox import relay
from outbox.models import Delivery
from outbox.services import events_record
from tests.conftest import wait_until
from tests.probe.events import ProbeHappened
from tests.probe.scenarios import (
    HANDLERS,
    all_finished,
    effect_counts,
    expected_effects,
    probes_record,
    seqs_by_aggregate,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dispatched(monkeypatch):
    """What the commits hand to the broker, caught here instead: (lease, rows) and wake-ups."""
    caught = {"dispatches": [], "wakes": 0}

    def wake() -> None:
        caught["wakes"] += 1

    monkeypatch.setattr(
        relay, "deliveries_dispatch", lambda *args: caught["dispatches"].append(args)
    )
    monkeypatch.setattr(relay, "relay_wake", wake)
    return caught


def _leased() -> set[tuple[str, str]]:
    rows = Delivery.objects.filter(lease_id__isnull=False).select_related("event")
    return {(d.handler, f"{d.event.aggregate_id}:{d.event.payload['seq']}") for d in rows}


def test_only_the_first_unblocked_delivery_of_each_aggregate_is_leased_to_its_transaction(
    dispatched,
):
    # when: one transaction with three events of `a` and one of `b`
    with transaction.atomic():
        events_record([ProbeHappened(aggregate="a", seq=s) for s in (1, 2, 3)])
        events_record([ProbeHappened(aggregate="b", seq=1)])
    # then: the first of each aggregate, for each handler, was leased and handed over
    assert _leased() == {(h, "a:1") for h in HANDLERS} | {(h, "b:1") for h in HANDLERS}
    [(_, first), (_, second)] = dispatched["dispatches"]
    assert len(first) == 2 and len(second) == 2
    # and nothing woke a drain: a's later events follow their first one's worker
    assert dispatched["wakes"] == 0
    # when: a later transaction records b again, while b's first is unfinished
    with transaction.atomic():
        events_record([ProbeHappened(aggregate="b", seq=2)])
    # then: it waits, not leased, and a drain is asked for
    assert not Delivery.objects.filter(event__payload__seq=2, lease_id__isnull=False).exists()
    assert len(dispatched["dispatches"]) == 2
    assert dispatched["wakes"] == 1


def test_leases_at_commit_expire_like_a_claims(dispatched, settings):
    # given
    before = timezone.now()
    # when
    with transaction.atomic():
        events_record([ProbeHappened(aggregate="a", seq=1)])
    # then
    for delivery in Delivery.objects.all():
        expires = delivery.lease_expires_at - before
        assert (
            settings.OUTBOX_LEASE_SECONDS - 1
            < expires.total_seconds()
            < settings.OUTBOX_LEASE_SECONDS + 5
        )
        assert delivery.started_lease_id is None and delivery.attempts == 0


def test_a_rolled_back_transaction_dispatches_nothing(dispatched):
    # when
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        events_record([ProbeHappened(aggregate="a", seq=1)])
        raise ZeroDivisionError
    # then
    assert dispatched["dispatches"] == [] and dispatched["wakes"] == 0


def test_with_dispatch_off_the_commit_wakes_a_drain_as_before(dispatched, settings):
    # given
    settings.OUTBOX_DISPATCH_ON_COMMIT = False
    # when
    with transaction.atomic():
        events_record([ProbeHappened(aggregate="a", seq=1)])
    # then
    assert not Delivery.objects.filter(lease_id__isnull=False).exists()
    assert dispatched["dispatches"] == [] and dispatched["wakes"] == 1


def test_a_broker_refusing_the_dispatch_hands_the_lease_back_to_the_next_drain(monkeypatch):
    # given: the broker refuses every publish, as when Redis is down
    def refuse(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(relay, "deliveries_publish", refuse)
    monkeypatch.setattr(relay, "relay_wake", lambda: None)
    # when: the commit succeeds all the same
    with transaction.atomic():
        events_record([ProbeHappened(aggregate="a", seq=1)])
    # then: nothing stays leased, and the next claim takes both deliveries at once
    assert wait_until(lambda: not Delivery.objects.filter(lease_id__isnull=False).exists(), 5)
    _, rows = relay.deliveries_claim(10)
    assert sorted(handler for _, handler in rows) == sorted(HANDLERS)


def test_a_committed_event_is_handled_without_any_drain(start_worker, redis_client):
    # given: a worker on the handlers' queue only, and no beat: a drain would stay queued
    worker = start_worker(queues="events")
    # when: events of distinct aggregates, and several of one aggregate in one transaction
    rows = probes_record(ProbeHappened(aggregate=f"solo{i}", seq=1) for i in range(20))
    with transaction.atomic():
        rows += events_record([ProbeHappened(aggregate="many", seq=s) for s in range(1, 6)])
    # then
    assert wait_until(all_finished, timeout=30)
    assert effect_counts() == expected_effects(rows)
    assert seqs_by_aggregate("probe.record")["many"] == [1, 2, 3, 4, 5]
    assert redis_client.llen("outbox") == 0
    assert worker.tasks_succeeded("outbox.drain_outbox") == 0


def test_a_process_that_dies_before_publishing_is_recovered_by_the_drain_after_the_lease(
    monkeypatch, start_worker, settings
):
    # given: the process "dies" between its commit and the publish
    monkeypatch.setattr(relay, "deliveries_dispatch", lambda *args: None)
    start_worker(beat=True)
    # when
    committed = time.monotonic()
    [row] = probes_record([ProbeHappened(aggregate="a", seq=1)])
    # then: nobody claims it while its lease runs, then a drain does, and it is handled once
    assert wait_until(all_finished, timeout=settings.OUTBOX_LEASE_SECONDS + 20)
    assert time.monotonic() - committed >= settings.OUTBOX_LEASE_SECONDS - 0.5
    assert effect_counts() == expected_effects([row])


def test_per_aggregate_order_holds_with_direct_dispatch_under_two_workers(start_workers):
    # given
    seed = int(os.environ.get("SHOPFLOW_TEST_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    start_workers(2, concurrency=2, beat=True)
    # when: one event per transaction over few aggregates, slow handlers and retries, so
    # some commits find their aggregate busy (not dispatched) and some find it free
    events = [
        ProbeHappened(aggregate=f"agg{a}", seq=seq, delay_ms=rng.choice([0, 0, 5, 20]),
                      fail_times=rng.choice([0, 0, 0, 0, 1]))
        for seq in range(1, 9)
        for a in range(4)
    ]  # fmt: skip
    rows = []
    for event in events:
        rows += probes_record([event])
        time.sleep(rng.choice([0, 0, 0.01, 0.03]))
    # then
    assert wait_until(all_finished, timeout=60), f"seed={seed}"
    for handler in HANDLERS:
        assert seqs_by_aggregate(handler) == {f"agg{a}": list(range(1, 9)) for a in range(4)}
    assert effect_counts() == expected_effects(rows), f"seed={seed}"


def test_while_workers_are_behind_the_dispatcher_gathers_commits_into_one_message(
    monkeypatch, settings, redis_client
):
    # given: messages nobody has taken yet wait in the handlers' queue, as this
    # process's last publish there found it
    settings.OUTBOX_DISPATCH_LINGER_SECONDS = 0.5
    published = []
    redis_client.delete("events")
    redis_client.lpush("events", *["an untaken message"] * settings.OUTBOX_DISPATCH_LINGER_DEPTH)
    relay.deliveries_publish(str(uuid.uuid4()), [(0, "probe.record")])
    monkeypatch.setattr(
        relay, "deliveries_publish", lambda lease, rows, **options: published.append(rows)
    )
    try:
        # when: three transactions commit within the linger
        rows = probes_record(ProbeHappened(aggregate=f"a{i}", seq=1) for i in range(3))
        # then: one publish carries all six deliveries
        assert wait_until(lambda: sum(len(batch) for batch in published) == 6, timeout=5)
        assert len(published) == 1
        assert {pk for pk, _ in published[0]} == set(
            Delivery.objects.filter(event__in=rows).values_list("id", flat=True)
        )
    finally:
        redis_client.delete("events")


def test_with_idle_workers_each_commit_is_published_at_once(monkeypatch, settings, redis_client):
    # given: an empty queue
    settings.OUTBOX_DISPATCH_LINGER_SECONDS = 0.5
    published = []
    monkeypatch.setattr(
        relay, "deliveries_publish", lambda lease, rows, **options: published.append(rows)
    )
    redis_client.delete("events")
    # when
    started = time.monotonic()
    probes_record([ProbeHappened(aggregate="a", seq=1)])
    # then: published without lingering
    assert wait_until(lambda: len(published) == 1, timeout=5)
    assert time.monotonic() - started < 0.4


def test_one_untaken_message_is_no_backlog_and_costs_no_linger(monkeypatch, settings, redis_client):
    # given: one message waits in the queue, as a worker is about to take it
    settings.OUTBOX_DISPATCH_LINGER_SECONDS = 0.5
    published = []
    redis_client.delete("events")
    relay.deliveries_publish(str(uuid.uuid4()), [(0, "probe.record")])
    monkeypatch.setattr(
        relay, "deliveries_publish", lambda lease, rows, **options: published.append(rows)
    )
    try:
        # when
        started = time.monotonic()
        probes_record([ProbeHappened(aggregate="a", seq=1)])
        # then: published without lingering
        assert wait_until(lambda: len(published) == 1, timeout=5)
        assert time.monotonic() - started < 0.4
    finally:
        redis_client.delete("events")


def test_a_commits_deliveries_to_several_queues_share_one_message_when_workers_share_them(
    settings,
):
    rows = [(1, "analytics.daily_sales"), (2, "orders.fulfilment"), (3, "probe.record")]
    # shared (the default): one message, to the first of their queues in the setting's order
    assert relay._by_queue(rows, shared=True) == {"saga": [1, 2, 3]}
    settings.OUTBOX_SHARED_QUEUE_ORDER = ["events", "saga"]
    assert relay._by_queue(rows, shared=True) == {"events": [1, 2, 3]}
    # not shared: one message per queue
    assert relay._by_queue(rows, shared=False) == {"events": [1, 3], "saga": [2]}
