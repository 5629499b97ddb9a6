"""Textbook relays the benchmark compares ShopFlow's relay with.

Both read the same delivery rows and publish the same `outbox.deliver` task,
one message per event, the way most outbox tutorials do it: select a page of
unsent rows `FOR UPDATE SKIP LOCKED`, publish each, mark the page sent, commit.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from django.db import transaction

from outbox.models import Delivery

POLL_INTERVAL = 5.0  # seconds the polling relay sleeps between polls
POLL_BATCH = 100  # rows the polling relay takes per poll


@dataclass(frozen=True)
class RelayRun:
    events: int
    busy_seconds: float  # measured: claiming, publishing, marking
    waits: int  # poll waits the relay would have slept through

    def seconds(self, interval: float = POLL_INTERVAL) -> float:
        """Wall-clock time including the poll waits."""
        return self.busy_seconds + self.waits * interval

    def per_second(self, interval: float = POLL_INTERVAL) -> float:
        return self.events / self.seconds(interval)


def _page_publish(batch: int) -> int:
    """Claim one page of unsent rows, publish one task per row, mark them sent."""
    from outbox.tasks import deliver

    lease_id = str(uuid.uuid4())
    with transaction.atomic():
        ids = list(
            Delivery.objects.filter(status=Delivery.Status.PENDING)
            .select_for_update(skip_locked=True)
            .order_by("id")
            .values_list("id", flat=True)[:batch]
        )
        for pk in ids:
            deliver.apply_async(args=(lease_id, [pk]))
        # "Sent": out of the pending index, as a textbook `sent_at` column would be.
        Delivery.objects.filter(id__in=ids).update(status=Delivery.Status.DONE)
    return len(ids)


def naive_relay_run(batch: int) -> RelayRun:
    """Drain everything pending, one Celery task per event, with no waits."""
    started = time.perf_counter()
    total = 0
    while count := _page_publish(batch):
        total += count
    return RelayRun(total, time.perf_counter() - started, waits=0)


def polling_relay_run() -> RelayRun:
    """Poll every POLL_INTERVAL seconds for POLL_BATCH rows, one task per event.

    The pages are really claimed and published; the sleeps are counted, not
    slept, so the run takes seconds instead of minutes: one wait between two
    polls, as `while True: publish_page(); sleep(5)` would, and (generously)
    none before the first poll.
    """
    started = time.perf_counter()
    total = polls = 0
    while count := _page_publish(POLL_BATCH):
        total += count
        polls += 1
    return RelayRun(total, time.perf_counter() - started, waits=max(polls - 1, 0))
