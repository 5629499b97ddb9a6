"""Deliveries a worker's task leases at commit run in that worker after its body, merged.

In process: the test process plays a worker consuming the `events` queue
(`shopflow.local_work`), so what would have been published is seen running here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import transaction

from outbox import delivery, relay
from outbox.models import Delivery
from outbox.services import events_record
from shopflow import local_work
from tests.probe.events import ProbeHappened
from tests.probe.scenarios import effect_counts

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def a_worker(settings, monkeypatch) -> Iterator[dict[str, list]]:
    """This process consuming `events`; what it processes and what it would have published."""
    settings.WORKER_LOCAL_WORK = True
    settings.OUTBOX_WAKE_ON_COMMIT = settings.OUTBOX_DISPATCH_ON_COMMIT = True
    seen: dict[str, list] = {"processed": [], "published": []}
    processed = delivery.deliveries_process

    def processing(lease_id: str, ids: list[int]) -> list:
        seen["processed"].append(list(ids))
        return processed(lease_id, ids)

    monkeypatch.setattr(delivery, "deliveries_process", processing)
    monkeypatch.setattr(relay, "_dispatch_queue", lambda: _Recorder(seen["published"]))
    monkeypatch.setattr(relay, "relay_wake", lambda: None)
    local_work.worker_queues_set(frozenset({"events"}))
    yield seen
    local_work.worker_queues_set(None)


class _Recorder:
    def __init__(self, into: list) -> None:
        self.into = into

    def put(self, item: tuple) -> None:
        self.into.append(item)


def _record(aggregate: str, seq: int) -> None:
    with transaction.atomic():
        events_record([ProbeHappened(aggregate=aggregate, seq=seq)])


def test_two_commits_in_a_task_are_handled_here_in_one_pass(a_worker):
    # when: a task body commits two events, each with two handlers on `events`
    with local_work.local_work():
        _record("a", 1)
        _record("b", 1)
        assert a_worker["processed"] == []  # nothing runs before the body ends
    # then: the four deliveries ran here, in one pass, and nothing was published
    ids = sorted(Delivery.objects.values_list("id", flat=True))
    assert a_worker["processed"] == [ids]
    assert a_worker["published"] == []
    assert set(Delivery.objects.values_list("status", flat=True)) == {"done"}
    assert sorted(effect_counts().values()) == [1, 1, 1, 1]


def test_outside_a_task_the_commit_publishes(a_worker):
    _record("a", 1)
    assert a_worker["processed"] == []
    assert [sorted(pk for pk, _ in rows) for _, rows in a_worker["published"]] == [
        sorted(Delivery.objects.values_list("id", flat=True))
    ]


def test_a_successor_claimed_here_is_kept_too(a_worker):
    # given: two events of one aggregate; only the first is leased at its commit
    with local_work.local_work():
        _record("a", 1)
        _record("a", 2)
    # then: the second was claimed as the first's successor and run here as well
    assert a_worker["published"] == []
    assert len(a_worker["processed"]) == 2
    assert set(Delivery.objects.values_list("status", flat=True)) == {"done"}


def test_each_delivery_run_here_is_counted_once(a_worker):
    from prometheus_client import REGISTRY

    def sent() -> float:
        return REGISTRY.get_sample_value("shopflow_outbox_relay_claimed_total") or 0.0

    before = sent()
    # when: two events of one aggregate, the second sent on as the first's successor
    with local_work.local_work():
        _record("a", 1)
        _record("a", 2)
    # then: four deliveries ran here, each counted once (the successor claim included)
    assert Delivery.objects.filter(status="done").count() == 4
    assert sent() - before == 4
