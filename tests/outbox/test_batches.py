"""Handlers subscribed with `batch=True`: a message's deliveries in one transaction, each once."""

import uuid

import pytest
from django.conf import settings
from django.db import connection, transaction

from outbox import relay
from outbox.delivery import deliveries_process
from outbox.models import Delivery
from outbox.services import events_record
from outbox.tasks import deliver
from shopflow.clock import db_later
from tests.conftest import wait_until
from tests.probe.events import ProbeBatched, ProbeHappened
from tests.probe.models import ProbeRecord, ProbeSwitch
from tests.probe.scenarios import all_finished, effect_counts, seqs_by_aggregate

pytestmark = pytest.mark.django_db(transaction=True)

HANDLER = "probe.batched"
LEASE = 2.0  # seconds; the worker's and its beat's OUTBOX_LEASE_SECONDS


def _recorded(*events: ProbeHappened) -> list[str]:
    """Record `events` in one transaction; their event ids."""
    with transaction.atomic():
        return [str(row.event_id) for row in events_record(list(events))]


def _once_each(event_ids: list[str]) -> dict[tuple[str, str], int]:
    return {(HANDLER, event_id): 1 for event_id in event_ids}


def _claimed_and_sent(copies: int = 1) -> tuple[str, list[int]]:
    """Claim every due delivery once and publish its message `copies` times."""
    lease_id, rows = relay.deliveries_claim(50)
    ids = [pk for pk, _ in rows]
    for _ in range(copies):
        deliver.apply_async(args=(lease_id, ids))
    return lease_id, ids


def test_a_batch_is_handled_once_with_one_flip_in_one_transaction(no_wake_up, start_worker):
    # given
    worker = start_worker()
    event_ids = _recorded(*(ProbeBatched(aggregate=f"a{i}", seq=1) for i in range(10)))
    # when: the ten deliveries travel in one message
    _claimed_and_sent()
    # then: each was handled once, on its first attempt
    assert wait_until(all_finished, timeout=20), worker.log_tail()
    assert effect_counts() == _once_each(event_ids)
    deliveries = Delivery.objects.all()
    assert {(d.status, d.attempts) for d in deliveries} == {("done", 1)}
    # and by one flip statement (one statement time) in one process
    assert len({d.done_at for d in deliveries}) == 1
    assert ProbeRecord.objects.values("pid").distinct().count() == 1


def test_a_poison_event_in_a_batch_fails_alone_while_the_others_are_done(start_worker):
    # given: probe.batched fails on one event for as long as the switch exists
    ProbeSwitch.objects.create(name="poison", handler=HANDLER)
    start_worker(beat=True)
    # when: it commits, and is dispatched, with four healthy neighbours
    event_ids = _recorded(
        ProbeBatched(aggregate="p", seq=1, fail_while="poison"),
        *(ProbeBatched(aggregate=f"a{i}", seq=1) for i in range(4)),
    )
    poison = Delivery.objects.get(aggregate_key="probe:p")
    # then: the neighbours are done on their first attempt, once each
    healthy = Delivery.objects.exclude(pk=poison.pk)
    assert wait_until(lambda: not healthy.exclude(status="done").exists(), timeout=20)
    assert {d.attempts for d in healthy} == {1}
    assert effect_counts() == _once_each(event_ids[1:])
    # and the poison event alone retries, then ends as a dead letter after max_attempts
    assert wait_until(lambda: Delivery.objects.get(pk=poison.pk).status == "dead", timeout=40)
    poison.refresh_from_db()
    assert poison.attempts == 4
    assert poison.last_error == "RuntimeError: probe switch 'poison' is on"


def test_a_duplicate_message_of_a_batch_changes_nothing(no_wake_up, start_worker):
    # given: three pool processes, and handlers slow enough for the copies to overlap
    worker = start_worker(concurrency=3)
    event_ids = _recorded(*(ProbeBatched(aggregate=f"a{i}", seq=1, delay_ms=100) for i in range(5)))
    # when: the batch's message arrives three times at once
    lease_id, ids = _claimed_and_sent(copies=3)
    assert wait_until(lambda: worker.tasks_succeeded("outbox.deliver") == 3, timeout=20), (
        worker.log_tail()
    )
    handled = list(Delivery.objects.order_by("id").values_list("status", "attempts", "done_at"))
    # and once more after the batch is done
    deliver.apply_async(args=(lease_id, ids))
    assert wait_until(lambda: worker.tasks_succeeded("outbox.deliver") == 4, timeout=20)
    # then: each delivery was handled once, and the late copy changed nothing
    assert effect_counts() == _once_each(event_ids)
    assert [(s, a) for s, a, _ in handled] == [("done", 1)] * 5
    assert list(Delivery.objects.order_by("id").values_list("status", "attempts", "done_at")) == (
        handled
    )


def test_a_batch_whose_worker_dies_buries_only_the_killer(start_worker):
    # given: probe.batched ends its process on one event of a batch of five
    ProbeSwitch.objects.create(name="oom", handler=HANDLER, kills_process=True)
    start_worker(beat=True, OUTBOX_LEASE_SECONDS=str(LEASE))
    # when
    event_ids = _recorded(
        ProbeBatched(aggregate="killer", seq=1, fail_while="oom"),
        *(ProbeBatched(aggregate=f"a{i}", seq=1) for i in range(4)),
    )
    killer = Delivery.objects.get(aggregate_key="probe:killer")
    others = Delivery.objects.exclude(pk=killer.pk)
    # then: its neighbours come back after the lease, as suspects each alone, and are done
    assert wait_until(lambda: not others.exclude(status="done").exists(), timeout=30)
    assert effect_counts() == _once_each(event_ids[1:])
    # and the killer ends as the one dead letter, after max_attempts deaths
    assert wait_until(lambda: Delivery.objects.get(pk=killer.pk).status == "dead", timeout=60)
    killer.refresh_from_db()
    assert killer.attempts == 4
    assert killer.last_error.startswith("WorkerDied: the worker died while handling")
    assert list(Delivery.objects.filter(status="dead")) == [killer]


def _leased_in_one_message(*events: ProbeHappened) -> tuple[str, list[int]]:
    """Record `events` and lease all their deliveries to one claim, in one transaction.

    The relay never leases two deliveries of one (handler, aggregate) at once;
    this does, to make a message that carries both.
    """
    lease_id = uuid.uuid4()
    with transaction.atomic():
        rows = events_record(list(events))
        deliveries = Delivery.objects.filter(event__in=rows)
        deliveries.update(
            lease_id=lease_id, lease_expires_at=db_later(settings.OUTBOX_LEASE_SECONDS)
        )
        return str(lease_id), list(deliveries.order_by("id").values_list("id", flat=True))


def test_an_event_behind_a_failed_one_of_its_aggregate_in_a_batch_waits_for_it(
    no_wake_up, start_worker
):
    # given: one message carrying two events of aggregate x, the first failing once
    worker = start_worker(beat=True)
    lease_id, ids = _leased_in_one_message(
        ProbeBatched(aggregate="x", seq=1, fail_times=1),
        ProbeBatched(aggregate="x", seq=2),
        ProbeBatched(aggregate="y", seq=1),
    )
    # when
    deliver.apply_async(args=(lease_id, ids))
    # then: x's second event was handled after its first's retry, on its own first attempt
    assert wait_until(all_finished, timeout=30), worker.log_tail()
    assert seqs_by_aggregate(HANDLER) == {"x": [1, 2], "y": [1]}
    assert list(Delivery.objects.order_by("id").values_list("attempts", flat=True)) == [2, 1, 1]


def _starts_seen(statements: list[bool]):
    """An execute wrapper noting, for each start statement, whether a transaction was open."""

    def wrapper(execute, sql, params, many, context):
        if "started_lease_id = lease_id" in sql and sql.lstrip().startswith("UPDATE"):
            statements.append(connection.in_atomic_block)
        return execute(sql, params, many, context)

    return wrapper


def test_each_start_after_the_first_commits_in_the_transaction_before_it(no_wake_up):
    # given: four probe.record deliveries in one message (probe.projection's too)
    _recorded(*(ProbeHappened(aggregate=f"a{i}", seq=1) for i in range(4)))
    lease_id, rows = relay.deliveries_claim(50)
    starts: list[bool] = []
    # when
    with connection.execute_wrapper(_starts_seen(starts)):
        outcomes = deliveries_process(lease_id, [pk for pk, _ in rows])
    # then: all done once; only the first start had a statement of its own
    assert [o.status for o in outcomes] == ["done"] * 8
    assert starts == [False] + [True] * 7
    assert {d.attempts for d in Delivery.objects.all()} == {1}


def test_a_delivery_after_a_failed_one_starts_on_its_own_and_is_done(no_wake_up):
    # given: the first of two probe.record deliveries fails its first attempt
    _recorded(
        ProbeHappened(aggregate="a", seq=1, fail_times=1), ProbeHappened(aggregate="b", seq=1)
    )
    lease_id, rows = relay.deliveries_claim(50)
    ids = [pk for pk, handler in rows if handler == "probe.record"]
    # when
    outcomes = deliveries_process(lease_id, ids)
    # then
    assert [o.status for o in outcomes] == ["retry", "done"]
    second = Delivery.objects.get(pk=ids[1])
    assert (second.status, second.attempts) == ("done", 1)
