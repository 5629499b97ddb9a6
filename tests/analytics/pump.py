"""The worker's job done in the test process: claim due deliveries and run their handlers.

Handlers still run through the outbox's own delivery path (a claim with a
lease, then `delivery_process`, each delivery in its own transaction), only
without a broker in between, so a test controls exactly when events are
handled. Tests of the workers themselves use `start_worker`.
"""

from __future__ import annotations

from outbox.delivery import delivery_process
from outbox.models import Delivery
from outbox.relay import deliveries_claim


def deliveries_run(limit: int = 500) -> int:
    """Claim and process due deliveries until none is due; returns how many ran.

    Each claimed delivery goes through `delivery_process`, as in a worker; the
    worker's next step, publishing each aggregate's successor to the broker,
    is left to this loop's next claim.
    """
    total = 0
    while True:
        lease_id, rows = deliveries_claim(limit)
        if not rows:
            return total
        claimed = Delivery.objects.filter(id__in=[pk for pk, _ in rows], lease_id=lease_id)
        for delivery in claimed.select_related("event").order_by("id"):
            delivery_process(delivery)
        total += len(rows)
