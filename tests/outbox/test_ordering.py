"""Per aggregate and handler, events are handled in the order they were written."""

import os
import random

import pytest

from outbox.models import Delivery
from tests.conftest import wait_until
from tests.probe.events import ProbeHappened
from tests.probe.models import ProbeRecord
from tests.probe.scenarios import (
    HANDLERS,
    all_finished,
    effect_counts,
    expected_effects,
    probes_record,
    seqs_by_aggregate,
)

pytestmark = pytest.mark.django_db(transaction=True)

AGGREGATES = 8
EVENTS_EACH = 6


def _random_events(rng: random.Random) -> list[ProbeHappened]:
    """Interleaved aggregates, each event sleeping and failing at random (transiently)."""
    return [
        ProbeHappened(
            aggregate=f"agg{a}",
            seq=seq,
            delay_ms=rng.choice([0, 0, 0, 5, 20]),
            # Below probe.record's max_attempts=4, so every failure is transient.
            fail_times=rng.choice([0, 0, 0, 0, 0, 1, 3]),
        )
        for seq in range(1, EVENTS_EACH + 1)
        for a in range(AGGREGATES)
    ]


def test_each_aggregate_is_handled_in_write_order_exactly_once_by_two_workers(start_workers):
    # given
    seed = int(os.environ.get("SHOPFLOW_TEST_SEED", random.randrange(2**32)))
    start_workers(2, concurrency=2, beat=True)
    # when
    rows = probes_record(_random_events(random.Random(seed)))
    # then
    assert wait_until(all_finished, timeout=60), f"seed={seed}"
    in_order = {f"agg{a}": list(range(1, EVENTS_EACH + 1)) for a in range(AGGREGATES)}
    for handler in HANDLERS:
        assert seqs_by_aggregate(handler) == in_order, f"{handler}, seed={seed}"
    assert effect_counts() == expected_effects(rows), f"seed={seed}"
    assert not Delivery.objects.exclude(status="done").exists()
    # the run really was adversarial: handlers retried, several processes took part
    assert ProbeRecord.objects.filter(attempt__gt=1).exists(), f"seed={seed}"
    assert ProbeRecord.objects.values("pid").distinct().count() > 1, f"seed={seed}"
