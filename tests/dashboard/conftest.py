"""The dashboard's known dataset, and clients for staff, a customer and nobody."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from tests.dashboard.factories import (
    SagaFactory,
    deliveries_done,
    delivery_dead,
    minutes_ago,
    order_created,
    probe_recorded,
)


@pytest.fixture
def dataset():
    """Deliveries, dead letters, sagas and orders whose counts the tests know.

    Deliveries: 6 done in the last minute, 2 five minutes ago, 2 twenty minutes
    ago (outside the 10-minute chart); probe.record is dead on aggregates b and
    c (b has its next event waiting behind), probe.projection dead on c; 3 pending.
    """
    now = timezone.now()
    for name in ("a1", "a2", "a3"):
        deliveries_done(probe_recorded(name), at=now - timedelta(seconds=10))
    deliveries_done(probe_recorded("a4"), at=minutes_ago(now, 5))
    deliveries_done(probe_recorded("a5"), at=minutes_ago(now, 20))
    blocking = delivery_dead(probe_recorded("b"), "probe.record")
    probe_recorded("b", seq=2)
    both_dead = probe_recorded("c")
    delivery_dead(both_dead, "probe.record")
    delivery_dead(both_dead, "probe.projection")
    sagas = {"running": 1, "completed": 3, "compensation_failed": 2, "compensated": 1}
    for status, count in sagas.items():
        SagaFactory.create_batch(count, status=status)
    for status, minutes in [("confirmed", 5), ("confirmed", 50), ("failed", 10),
                            ("pending", 1), ("cancelled", 90)]:  # fmt: skip
        order_created(status, at=minutes_ago(now, minutes))
    return SimpleNamespace(blocking=blocking)


@pytest.fixture(autouse=True)
def _no_wake_up(no_wake_up: None) -> None:
    """Every dashboard test runs without the relay's wake-up."""
