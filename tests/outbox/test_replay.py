"""replay_outbox and the replay service: what they select, what the inbox lets through,
and everything they refuse before changing a row. No worker runs here; the tests look
at the delivery rows the relay would claim (test_replay_worker.py runs them for real)."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from outbox.models import Delivery, OutboxEvent
from outbox.registry import subscribe, unsubscribe
from outbox.replay import ReplayRefused, events_replay
from outbox.selectors import EventSelection
from outbox.services import events_record
from tests.probe.events import ProbeHappened

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_wake_up(settings):
    settings.OUTBOX_WAKE_ON_COMMIT = False


def record(*events: ProbeHappened) -> list[OutboxEvent]:
    with transaction.atomic():
        return events_record(events)


def handled(*events: OutboxEvent) -> None:
    Delivery.objects.filter(event__in=events).update(
        status="done", attempts=1, done_at=timezone.now()
    )


def kill(event: OutboxEvent, handler: str = "probe.record") -> None:
    Delivery.objects.filter(event=event, handler=handler).update(
        status="dead", attempts=4, last_error="RuntimeError: probe failure on attempt 4"
    )


def statuses() -> dict[tuple[int, str], str]:
    return {(d.event_id, d.handler): d.status for d in Delivery.objects.all()}


def replay(*args: str) -> str:
    out = StringIO()
    call_command("replay_outbox", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


# --- What the inbox lets through ----------------------------------------------------------


def test_replay_skips_done_requeues_dead_and_leaves_pending_alone():
    # given
    done, dead, pending = record(*(ProbeHappened(aggregate=f"a{i}", seq=1) for i in range(3)))
    handled(done, dead)
    kill(dead)
    # when
    output = replay("--id", str(done.pk), "--id", str(dead.pk), "--id", str(pending.pk))
    # then
    assert output == (
        "3 events: 1 requeued, 0 created, 3 skipped (already done), 0 reprocessed, "
        "2 already pending"
    )
    requeued = Delivery.objects.get(event=dead, handler="probe.record")
    assert (requeued.status, requeued.attempts) == ("pending", 0)
    assert requeued.next_attempt_at <= timezone.now()
    assert Delivery.objects.filter(event=done, status="done").count() == 2


def test_replay_creates_the_delivery_of_a_handler_that_subscribed_later():
    # given
    [event] = record(ProbeHappened(aggregate="a1", seq=1))
    handled(event)
    subscribe(ProbeHappened, name="probe.late")(lambda event, context: None)
    try:
        # when
        output = replay("--aggregate", "probe:a1")
        # then
        assert output.startswith("1 events: 0 requeued, 1 created, 2 skipped")
        late = Delivery.objects.get(event=event, handler="probe.late")
        assert (late.status, late.aggregate_key) == ("pending", "probe:a1")
    finally:
        unsubscribe("probe.late")


def test_replay_recreates_a_purged_inbox_record():
    # given
    [event] = record(ProbeHappened(aggregate="a1", seq=1))
    handled(event)
    Delivery.objects.filter(event=event, handler="probe.projection").delete()
    # when
    output = replay("--id", str(event.event_id))
    # then
    assert output.startswith("1 events: 0 requeued, 1 created, 1 skipped")
    assert statuses() == {
        (event.pk, "probe.record"): "done",
        (event.pk, "probe.projection"): "pending",
    }


def test_replay_for_one_handler_leaves_the_other_handlers_alone():
    # given
    [event] = record(ProbeHappened(aggregate="a1", seq=1))
    Delivery.objects.filter(event=event).update(status="dead")
    # when
    output = replay("--id", str(event.pk), "--handler", "probe.projection")
    # then
    assert output.startswith("1 events: 1 requeued, 0 created, 0 skipped")
    assert statuses() == {
        (event.pk, "probe.record"): "dead",
        (event.pk, "probe.projection"): "pending",
    }


def test_reprocess_for_a_replayable_handler_makes_only_its_done_deliveries_due():
    # given
    events = record(ProbeHappened(aggregate="a1", seq=1), ProbeHappened(aggregate="a1", seq=2))
    handled(*events)
    # when
    output = replay("--aggregate", "probe:a1", "--reprocess", "--handler", "probe.projection")
    # then
    assert output == (
        "2 events: 0 requeued, 0 created, 0 skipped (already done), 2 reprocessed, "
        "0 already pending"
    )
    assert {status for (_, handler), status in statuses().items() if handler == "probe.record"} == {
        "done"
    }
    projection = Delivery.objects.filter(handler="probe.projection")
    assert {(d.status, d.attempts, d.done_at) for d in projection} == {("pending", 0, None)}


def test_reprocess_without_a_handler_refuses_naming_the_handler_that_is_not_replayable():
    # given
    [event] = record(ProbeHappened(aggregate="a1", seq=1))
    handled(event)
    # when
    with pytest.raises(CommandError, match=r"probe\.record, which is not replayable"):
        replay("--id", str(event.pk), "--reprocess")
    # then
    assert set(statuses().values()) == {"done"}


def test_reprocess_of_a_handler_that_is_not_replayable_is_refused():
    # given
    [event] = record(ProbeHappened(aggregate="a1", seq=1))
    handled(event)
    # when
    with pytest.raises(CommandError, match=r"probe\.record, which is not replayable"):
        replay("--id", str(event.pk), "--reprocess", "--handler", "probe.record")
    # then
    assert set(statuses().values()) == {"done"}


def test_replay_of_dead_letters_selects_only_events_with_a_dead_delivery():
    # given
    dead, healthy = record(
        ProbeHappened(aggregate="a1", seq=1), ProbeHappened(aggregate="a2", seq=1)
    )
    handled(dead, healthy)
    kill(dead)
    # when
    output = replay("--status", "dead")
    # then
    assert output.startswith("1 events: 1 requeued, 0 created, 1 skipped")
    assert statuses()[(dead.pk, "probe.record")] == "pending"


def test_dry_run_reports_what_would_happen_and_changes_nothing():
    # given
    [event] = record(ProbeHappened(aggregate="a1", seq=1))
    handled(event)
    kill(event)
    Delivery.objects.filter(event=event, handler="probe.projection").delete()
    before = statuses()
    # when
    output = replay("--id", str(event.pk), "--dry-run")
    # then
    assert output == (
        "dry run, nothing changed; would replay 1 events: 1 requeued, 1 created, "
        "0 skipped (already done), 0 reprocessed, 0 already pending"
    )
    assert statuses() == before


# --- Selection -------------------------------------------------------------------------------


def test_selectors_combine_with_and():
    # given
    _a1_first, a1_second, _a2_first = record(
        ProbeHappened(aggregate="a1", seq=1),
        ProbeHappened(aggregate="a1", seq=2),
        ProbeHappened(aggregate="a2", seq=1),
    )
    Delivery.objects.update(status="dead")
    # when
    output = replay(
        "--type", "probe.happened", "--from-id", str(a1_second.pk), "--aggregate", "probe:a1"
    )
    # then
    assert output.startswith("1 events: 2 requeued")
    assert {event_pk for (event_pk, _), s in statuses().items() if s == "pending"} == {a1_second.pk}


def test_since_and_until_select_by_creation_date():
    # given
    old, recent = record(ProbeHappened(aggregate="a1", seq=1), ProbeHappened(aggregate="a2", seq=1))
    OutboxEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    Delivery.objects.update(status="dead")
    today = timezone.localdate().isoformat()
    # when
    output = replay("--since", today, "--until", today)
    # then
    assert output.startswith("1 events: 2 requeued")
    assert statuses()[(recent.pk, "probe.record")] == "pending"
    assert statuses()[(old.pk, "probe.record")] == "dead"


def test_events_older_than_the_retention_need_force(settings):
    # given
    settings.OUTBOX_RETENTION_DAYS = 7
    [event] = record(ProbeHappened(aggregate="a1", seq=1))
    OutboxEvent.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(days=8))
    kill(event)
    # when
    with pytest.raises(CommandError, match=r"older than the retention.*--force"):
        replay("--id", str(event.pk))
    assert statuses()[(event.pk, "probe.record")] == "dead"
    output = replay("--id", str(event.pk), "--force")
    # then
    assert output.startswith("1 events: 1 requeued")
    assert statuses()[(event.pk, "probe.record")] == "pending"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "select the events to replay"),
        (("--handler", "probe.record"), "select the events to replay"),
        (("--id", "nine"), "neither an event number nor a UUID"),
        (("--id", "999999"), "no outbox event with id 999999"),
        (("--from-id", "5", "--to-id", "2"), "from-id 5 is after to-id 2"),
        (("--from-id", "-3"), "--from-id must be a positive event id"),
        (("--type", "probe.vanished"), "unknown event type probe.vanished"),
        (("--aggregate", "probe"), "--aggregate must look like TYPE:ID"),
        (("--since", "yesterday"), "--since must be an ISO date or datetime"),
        (("--until", "2025-02-30"), "--until must be an ISO date or datetime"),
        (("--since", "2025-03-02", "--until", "2025-03-01"), "is not before until"),
        (("--status", "done"), "--status must be 'dead'"),
        (("--type", "probe.happened", "--handler", "probe.nobody"), "no handler named"),
    ],
)
def test_bad_selections_are_refused_and_change_nothing(args, message):
    # given
    [event] = record(ProbeHappened(aggregate="a1", seq=1))
    kill(event)
    before = statuses()
    # when
    with pytest.raises(CommandError, match=message):
        replay(*args)
    # then
    assert statuses() == before


def test_the_service_reports_progress_per_chunk():
    # given
    events = record(*(ProbeHappened(aggregate="a1", seq=i) for i in range(5)))
    calls = []
    # when
    summary = events_replay(
        EventSelection(from_id=events[0].pk),
        progress=lambda done, total: calls.append((done, total)),
        chunk_size=2,
    )
    # then
    assert summary.events == 5 and summary.in_flight == 10
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_the_service_refuses_an_empty_selection():
    # given
    record(ProbeHappened(aggregate="a1", seq=1))
    # when / then
    with pytest.raises(ReplayRefused, match="select the events"):
        events_replay(EventSelection(), dry_run=True)
