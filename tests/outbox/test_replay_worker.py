"""Replay and drain against real Celery workers: what runs again is what the inbox allows.

"Nothing ran" is proved by a sentinel: a later event of the same aggregate. A
handler takes an aggregate's deliveries in order, so once the sentinel is
handled, anything the replay queued before it has been handled too.
"""

import signal
import subprocess
import sys
from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from outbox.models import Delivery, OutboxEvent
from outbox.services import events_record
from tests.conftest import ROOT, wait_until
from tests.probe.events import ProbeHappened
from tests.probe.models import ProbeRecord

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def drain_loop(start_worker, worker_env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """`drain_outbox --loop` standing in for beat, which retries need (no wake-up is due then)."""
    loop = subprocess.Popen(
        [sys.executable, "manage.py", "drain_outbox", "--loop", "--interval", "0.1"],
        cwd=ROOT, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    yield loop
    loop.send_signal(signal.SIGINT)
    _, stderr = loop.communicate(timeout=15)
    assert loop.returncode == 0, stderr


def record(*events: ProbeHappened) -> list[OutboxEvent]:
    with transaction.atomic():
        return events_record(events)


def handled(event: OutboxEvent) -> bool:
    statuses = list(Delivery.objects.filter(event=event).values_list("status", flat=True))
    return statuses == ["done", "done"]


def effects(event: OutboxEvent, handler: str) -> int:
    return ProbeRecord.objects.filter(event_id=event.event_id, handler=handler).count()


def replay(*args: str) -> str:
    out = StringIO()
    call_command("replay_outbox", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def settle(aggregate: str, seq: int) -> None:
    """Record a sentinel event on the aggregate and wait until both handlers took it."""
    [sentinel] = record(ProbeHappened(aggregate=aggregate, seq=seq))
    assert wait_until(lambda: handled(sentinel), timeout=20)


def test_replaying_a_handled_event_runs_no_handler_again(start_worker):
    # given
    start_worker()
    [event] = record(ProbeHappened(aggregate="a1", seq=1))
    assert wait_until(lambda: handled(event), timeout=20)
    # when
    output = replay("--id", str(event.pk))
    settle("a1", seq=2)
    # then
    assert effects(event, "probe.record") == 1
    assert effects(event, "probe.projection") == 1
    assert "2 skipped (already done)" in output


def test_reprocess_of_the_projection_reruns_only_the_projection(start_worker):
    # given
    start_worker()
    [event] = record(ProbeHappened(aggregate="a1", seq=1))
    assert wait_until(lambda: handled(event), timeout=20)
    # when
    output = replay("--id", str(event.pk), "--reprocess", "--handler", "probe.projection")
    assert wait_until(lambda: effects(event, "probe.projection") == 2, timeout=20)
    settle("a1", seq=2)
    # then
    assert "1 reprocessed" in output
    assert effects(event, "probe.projection") == 2
    assert effects(event, "probe.record") == 1
    assert handled(event)


def test_reprocess_without_a_handler_is_refused_and_runs_nothing(start_worker):
    # given
    start_worker()
    [event] = record(ProbeHappened(aggregate="a1", seq=1))
    assert wait_until(lambda: handled(event), timeout=20)
    # when
    with pytest.raises(CommandError, match=r"probe\.record"):
        replay("--id", str(event.pk), "--reprocess")
    settle("a1", seq=2)
    # then
    assert effects(event, "probe.record") == 1
    assert effects(event, "probe.projection") == 1


def test_dead_letters_requeued_by_replay_are_handled_in_aggregate_order(start_worker, drain_loop):
    # given: probe.record gives up after 4 failed attempts; the next event waits behind it
    start_worker()
    first, second = record(
        ProbeHappened(aggregate="a1", seq=1, fail_times=4), ProbeHappened(aggregate="a1", seq=2)
    )
    dead = Delivery.objects.filter(event=first, handler="probe.record")
    assert wait_until(lambda: dead.filter(status="dead").exists(), timeout=30)
    assert "RuntimeError: probe failure on attempt 4" in dead.get().last_error
    # the operator fixes the cause (here: the event no longer asks the handler to fail)
    OutboxEvent.objects.filter(pk=first.pk).update(payload={**first.payload, "fail_times": 0})
    # when
    output = replay("--status", "dead")
    # then
    assert output.startswith("1 events: 1 requeued")
    assert wait_until(lambda: handled(first) and handled(second), timeout=20)
    seqs = ProbeRecord.objects.filter(handler="probe.record").order_by("id")
    assert list(seqs.values_list("seq", "attempt")) == [(1, 1), (2, 1)]


def test_drain_outbox_hands_due_deliveries_to_the_workers(start_worker, settings):
    # given: nothing wakes the relay on commit, so only the command can
    settings.OUTBOX_WAKE_ON_COMMIT = False
    start_worker()
    [event] = record(ProbeHappened(aggregate="a1", seq=1))
    # when
    out = StringIO()
    call_command("drain_outbox", stdout=out)
    # then
    assert out.getvalue().startswith("published 2 deliveries")
    assert wait_until(lambda: handled(event), timeout=20)
    assert effects(event, "probe.record") == 1
