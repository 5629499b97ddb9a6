"""drain_outbox, outbox_status and purge_outbox, called as an operator would call them."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from outbox.models import Delivery, OutboxEvent
from outbox.services import events_record
from tests.probe.events import ProbeHappened

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_wake_up(settings):
    """No worker runs here: keep deliveries where the test puts them."""
    settings.OUTBOX_WAKE_ON_COMMIT = False


def record(*events: ProbeHappened) -> list[OutboxEvent]:
    with transaction.atomic():
        return events_record(events)


def kill(event: OutboxEvent, handler: str = "probe.record") -> None:
    """Leave the delivery as a worker leaves it after its last failed attempt."""
    Delivery.objects.filter(event=event, handler=handler).update(
        status="dead", attempts=4, last_error="RuntimeError: probe failure on attempt 4"
    )


def finish(event: OutboxEvent) -> None:
    Delivery.objects.filter(event=event).update(status="done", done_at=timezone.now())


def age(event: OutboxEvent, days: int) -> None:
    OutboxEvent.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(days=days))


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


# --- drain_outbox ------------------------------------------------------------------------


def test_drain_outbox_publishes_due_deliveries_and_prints_a_summary(redis_client):
    # given
    record(ProbeHappened(aggregate="a1", seq=1), ProbeHappened(aggregate="a2", seq=1))
    queued_before = redis_client.llen("events")
    # when
    output = run("drain_outbox")
    # then
    assert output.startswith("published 4 deliveries; 4 pending")
    assert not Delivery.objects.filter(lease_id__isnull=True).exists()
    assert redis_client.llen("events") == queued_before + 1  # one message for the batch


def test_drain_outbox_with_nothing_due_publishes_nothing():
    # when
    output = run("drain_outbox")
    # then
    assert output.strip() == "published 0 deliveries; 0 pending, 0 dead"


@pytest.mark.parametrize("interval", ["0", "-1", "soon", "nan", "inf"])
def test_drain_outbox_refuses_an_interval_that_is_not_a_positive_number(interval):
    # given
    record(ProbeHappened(aggregate="a1", seq=1))
    # when
    with pytest.raises(CommandError, match="--interval must be a positive number"):
        run("drain_outbox", "--loop", "--interval", interval)
    # then
    assert not Delivery.objects.filter(lease_id__isnull=False).exists()


# --- outbox_status -------------------------------------------------------------------------


def test_outbox_status_json_counts_pending_dead_and_blocked_aggregates_per_handler():
    # given: a1's first event is a dead letter for probe.record, its second waits behind it
    first, _second, other = record(
        ProbeHappened(aggregate="a1", seq=1),
        ProbeHappened(aggregate="a1", seq=2),
        ProbeHappened(aggregate="a2", seq=1),
    )
    kill(first)
    finish(other)
    # when
    status = json.loads(run("outbox_status", "--json"))
    # then
    assert status["pending"] == 3 and status["dead"] == 1 and status["blocked_aggregates"] == 1
    assert status["oldest_pending_age"] >= 0
    assert status["handlers"]["probe.record"] == {
        "pending": 1,
        "dead": 1,
        "blocked_aggregates": 1,
        "oldest_pending_age": status["handlers"]["probe.record"]["oldest_pending_age"],
    }
    assert status["handlers"]["probe.projection"]["pending"] == 2
    [blocked] = status["blocked"]
    assert blocked["handler"] == "probe.record" and blocked["aggregate_key"] == "probe:a1"
    assert blocked["event_pk"] == first.pk and blocked["event_id"] == str(first.event_id)
    assert blocked["waiting"] == 1
    assert blocked["last_error"].startswith("RuntimeError")


def test_outbox_status_names_the_event_that_blocks_an_aggregate():
    # given
    first, _second = record(
        ProbeHappened(aggregate="a1", seq=1), ProbeHappened(aggregate="a1", seq=2)
    )
    kill(first)
    # when
    output = run("outbox_status")
    # then
    assert "pending: 3" in output and "dead: 1" in output
    assert (
        f"probe.record on probe:a1: blocked by event #{first.pk} probe.happened "
        f"({first.event_id}), 1 waiting; RuntimeError" in output
    )


def test_outbox_status_of_a_quiet_outbox_lists_every_handler_with_nothing_pending():
    # when
    status = json.loads(run("outbox_status", "--json"))
    # then
    assert status["pending"] == 0 and status["oldest_pending_age"] is None
    assert status["handlers"]["probe.record"]["pending"] == 0
    assert status["blocked"] == []


def test_outbox_status_refuses_a_limit_that_is_not_a_number():
    with pytest.raises(CommandError, match="--limit must be a whole number"):
        run("outbox_status", "--limit", "lots")


# --- purge_outbox --------------------------------------------------------------------------


def test_purge_outbox_deletes_only_processed_events_older_than_the_given_days():
    # given
    old_done, old_dead, old_pending, new_done = record(
        *(ProbeHappened(aggregate=f"a{i}", seq=1) for i in range(4))
    )
    for event in (old_done, old_dead, old_pending):
        age(event, days=10)
    finish(old_done)
    finish(old_dead)
    kill(old_dead)
    finish(new_done)
    # when
    output = run("purge_outbox", "--older-than", "5")
    # then
    assert output.strip() == "purged 1 events older than 5 days"
    remaining = set(OutboxEvent.objects.values_list("pk", flat=True))
    assert remaining == {old_dead.pk, old_pending.pk, new_done.pk}
    assert not Delivery.objects.filter(event_id=old_done.pk).exists()
    assert Delivery.objects.count() == 6


def test_purge_outbox_dry_run_counts_and_deletes_nothing():
    # given
    [event] = record(ProbeHappened(aggregate="a1", seq=1))
    age(event, days=10)
    finish(event)
    # when
    output = run("purge_outbox", "--older-than", "5", "--dry-run")
    # then
    assert output.strip() == "dry run: would purge 1 events older than 5 days"
    assert OutboxEvent.objects.count() == 1 and Delivery.objects.count() == 2


def test_purge_outbox_defaults_to_the_retention_period(settings):
    # given
    settings.OUTBOX_RETENTION_DAYS = 3
    older, younger = record(
        ProbeHappened(aggregate="a1", seq=1), ProbeHappened(aggregate="a2", seq=1)
    )
    age(older, days=4)
    age(younger, days=2)
    finish(older)
    finish(younger)
    # when
    output = run("purge_outbox")
    # then
    assert output.strip() == "purged 1 events older than 3 days"
    assert list(OutboxEvent.objects.values_list("pk", flat=True)) == [younger.pk]


@pytest.mark.parametrize("days", ["-1", "a week", "1.5"])
def test_purge_outbox_refuses_days_that_are_not_a_whole_positive_number(days):
    # given
    [event] = record(ProbeHappened(aggregate="a1", seq=1))
    age(event, days=10)
    finish(event)
    # when
    with pytest.raises(CommandError, match="--older-than must be a whole number"):
        run("purge_outbox", "--older-than", days)
    # then
    assert OutboxEvent.objects.count() == 1
