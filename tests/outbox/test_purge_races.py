"""The purge against a forced replay: a delivery made due again is never purged under it."""

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from outbox import services
from outbox.models import Delivery, OutboxEvent
from outbox.replay import events_replay
from outbox.selectors import EventSelection
from outbox.services import events_record, outbox_purge
from tests.conftest import run_concurrently
from tests.probe.events import ProbeHappened

pytestmark = pytest.mark.django_db(transaction=True)

PROJECTION = "probe.projection"  # the probe's replayable handler


@pytest.fixture(autouse=True)
def _no_wake_up(no_wake_up):
    """Nothing delivers here: what the purge leaves is what the replay made due."""


def old_handled_events(count: int) -> list[int]:
    """`count` events past the retention, every delivery done; their ids."""
    with transaction.atomic():
        rows = events_record(ProbeHappened(aggregate=f"a{i}", seq=1) for i in range(count))
    ids = [row.pk for row in rows]
    OutboxEvent.objects.filter(pk__in=ids).update(created_at=timezone.now() - timedelta(days=30))
    Delivery.objects.filter(event_id__in=ids).update(status="done", done_at=timezone.now())
    return ids


def forced_replay(**options):
    """What `rebuild_analytics` and `replay_outbox --force --reprocess` do to the projection."""
    selection = EventSelection(types=("probe.happened",))
    return events_replay(selection, handler=PROJECTION, reprocess=True, force=True, **options)


def in_turn(*funcs: Callable[[], None]) -> Callable[[], None]:
    """One callable for `run_concurrently`: each thread runs the next of `funcs`."""
    pending, lock = iter(funcs), threading.Lock()

    def run() -> None:
        with lock:
            func = next(pending)
        func()

    return run


def test_a_replay_between_the_purges_select_and_its_delete_keeps_its_deliveries(monkeypatch):
    # given: the purge has selected the events when a forced replay makes them due again
    ids = old_handled_events(3)
    purge_slice = services._purge_slice

    def replay_then_purge(selected: list[int]) -> int:
        assert sorted(selected) == ids
        forced_replay()
        return purge_slice(selected)

    monkeypatch.setattr(services, "_purge_slice", replay_then_purge)
    # when
    purged = outbox_purge()
    # then: the replayed events and all their deliveries are still there, due
    assert purged == 0
    assert sorted(OutboxEvent.objects.values_list("pk", flat=True)) == ids
    pending = Delivery.objects.filter(handler=PROJECTION, status="pending")
    assert sorted(pending.values_list("event_id", flat=True)) == ids
    assert Delivery.objects.filter(handler="probe.record", status="done").count() == 3


def test_a_replay_that_meets_a_purge_in_progress_loses_cleanly():
    # given: one old event has lost its projection delivery, so the replay would create one
    ids = old_handled_events(3)
    Delivery.objects.filter(event_id=ids[-1], handler=PROJECTION).delete()
    purging, outcome = threading.Event(), {}

    def purge_slowly() -> None:
        with transaction.atomic():
            outcome["purged"] = services._purge_slice(ids)
            purging.set()
            time.sleep(0.5)  # the replay plans and writes meanwhile

    def replay_meanwhile() -> None:
        purging.wait(timeout=10)
        outcome["replay"] = forced_replay()

    # when
    run_concurrently(2, in_turn(purge_slowly, replay_meanwhile))
    # then: the purge won; the replay changed nothing and did not fail
    assert outcome["purged"] == 3
    assert (outcome["replay"].reprocessed, outcome["replay"].created) == (0, 0)
    assert not OutboxEvent.objects.exists()
    assert not Delivery.objects.exists()
