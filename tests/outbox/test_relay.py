"""The relay: concurrent drains claim each delivery once; wake-ups are coalesced."""

from collections import Counter

import pytest
from django.core.cache import cache
from django.db import transaction

from outbox import relay
from outbox.models import Delivery
from outbox.services import events_record
from tests.conftest import run_concurrently, wait_until
from tests.probe.events import ProbeHappened
from tests.probe.scenarios import effect_counts, expected_effects, probes_record

pytestmark = pytest.mark.django_db(transaction=True)

DRAINS = 8


def _events_recorded(count: int) -> list:
    """`count` events of distinct aggregates, so every delivery is claimable at once."""
    with transaction.atomic():
        return events_record(ProbeHappened(aggregate=f"a{i}", seq=1) for i in range(count))


def _claim_until_empty() -> list[int]:
    claimed: list[int] = []
    while True:
        _, rows = relay.deliveries_claim(20)
        if not rows:
            return claimed
        claimed += [pk for pk, _ in rows]


def test_concurrent_claims_lease_each_delivery_exactly_once(settings):
    # given
    settings.OUTBOX_WAKE_ON_COMMIT = False
    _events_recorded(300)
    pending = set(Delivery.objects.values_list("id", flat=True))
    # when
    claims = run_concurrently(DRAINS, _claim_until_empty)
    # then
    claimed = [pk for claim in claims for pk in claim]
    twice = [pk for pk, n in Counter(claimed).items() if n > 1]
    assert twice == []
    assert set(claimed) == pending
    assert sum(1 for claim in claims if claim) > 1, "only one thread claimed: no contention"


def test_concurrent_drains_with_a_worker_handle_each_event_once_per_handler(settings, start_worker):
    # given: only the drains below publish (no on-commit wake-up, no beat)
    settings.OUTBOX_WAKE_ON_COMMIT = False
    start_worker(concurrency=2)
    rows = _events_recorded(200)
    # when
    published = run_concurrently(DRAINS, relay.drain)
    # then
    assert sum(published) == 2 * len(rows)
    assert wait_until(lambda: sum(effect_counts().values()) >= 2 * len(rows), timeout=30)
    assert wait_until(lambda: not Delivery.objects.exclude(status="done").exists())
    assert effect_counts() == expected_effects(rows)


def test_a_burst_of_commits_enqueues_only_a_handful_of_drains(start_worker, redis_client):
    # given: no worker yet, so every drain message asked for stays on the queue
    cache.delete(relay.WAKE_KEY)
    # when: 500 separate transactions commit, over five aggregates: each aggregate's first
    # delivery is dispatched at commit, every later one waits for it and wakes the relay
    rows = probes_record(ProbeHappened(aggregate=f"a{i % 5}", seq=i) for i in range(500))
    # then
    drains_queued = redis_client.llen("outbox")
    assert 1 <= drains_queued <= 5
    # and a worker started now drains them all, so no event was left waiting
    start_worker(concurrency=2)
    assert wait_until(lambda: sum(effect_counts().values()) >= 2 * len(rows), timeout=60)
    assert effect_counts() == expected_effects(rows)
