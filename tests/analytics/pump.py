"""The workers' jobs done in the test process: relay and deliver events, move sagas.

Handlers still run through the outbox's own delivery path (a claim with a
lease, then `deliveries_process`, each delivery in its own transaction), only
without a broker in between, so a test drives hundreds of orders quickly and
in a repeatable order. Tests of the workers themselves use `start_worker`.
"""

from __future__ import annotations

import time

from django.test import override_settings

from outbox.delivery import deliveries_process
from outbox.models import Delivery
from outbox.relay import deliveries_claim
from sagas.engine import saga_advance
from sagas.models import Saga


def deliveries_run(limit: int = 500) -> int:
    """Claim and process due deliveries until none is due; returns how many ran."""
    total = 0
    while True:
        lease_id, rows = deliveries_claim(limit)
        if not rows:
            return total
        deliveries_process(lease_id, [pk for pk, _ in rows])
        total += len(rows)


def sagas_advance() -> int:
    """Make the next move of every active saga that has one; returns how many are active."""
    active = list(Saga.objects.filter(status__in=Saga.ACTIVE).values_list("pk", flat=True))
    for saga_id in active:
        saga_advance(saga_id)
    return len(active)


def run_until_quiet(timeout: float = 120.0) -> None:
    """Deliver events and move sagas until no delivery is pending and no saga is active.

    Wake-ups are off: nothing but this loop should pick the work up.
    """
    deadline = time.monotonic() + timeout
    with override_settings(OUTBOX_WAKE_ON_COMMIT=False):
        while time.monotonic() < deadline:
            delivered = deliveries_run()
            active = sagas_advance()
            if not (delivered or active or Delivery.objects.filter(status="pending").exists()):
                return
            if not delivered:
                time.sleep(0.01)  # sagas waiting out a retry's backoff
    raise AssertionError(f"still busy after {timeout:g} s")
