"""The relay: claim due deliveries in batches and publish them to the workers.

Any number of relays may run at once (two beats, a replay, a command): the
claim is `SELECT … FOR UPDATE SKIP LOCKED`, and a claimed delivery carries a
lease in PostgreSQL, so a message the broker loses comes back when the lease
expires instead of after Redis' visibility timeout (celery#5508, #4984).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from outbox.metrics import RELAY_BATCH_SECONDS, RELAY_CLAIMED
from outbox.models import Delivery
from outbox.registry import UnknownHandler, get_handler

logger = logging.getLogger("shopflow.outbox.relay")

# Set while a drain has been asked for and has not started yet: later commits
# need not ask again. A drain clears it before its first claim, so an event
# committed after that clear asks for a new drain and is never left waiting.
WAKE_KEY = "shopflow:outbox:wake"
WAKE_KEY_TTL = 5  # seconds; bounds how long a lost drain message can mute wake-ups


def relay_wake() -> None:
    """Ask a worker to drain soon, unless a drain is already asked for."""
    from outbox.tasks import drain_outbox

    try:
        if cache.add(WAKE_KEY, 1, timeout=WAKE_KEY_TTL):
            drain_outbox.apply_async(retry=False)
    except Exception:  # the beat-driven drain still runs; never fail the caller's commit
        logger.warning("relay wake-up failed; beat will drain", exc_info=True)


def _claimable(now: timezone.datetime) -> QuerySet[Delivery]:
    earlier_unfinished = Delivery.objects.filter(
        handler=OuterRef("handler"),
        aggregate_key=OuterRef("aggregate_key"),
        id__lt=OuterRef("id"),
    ).exclude(status=Delivery.Status.DONE)
    return (
        Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .filter(~Exists(earlier_unfinished))
        .order_by("id")
    )


def deliveries_claim(limit: int) -> tuple[str, list[tuple[int, str]]]:
    """Lease up to `limit` due deliveries; returns the lease id and (id, handler) pairs.

    Only the oldest unfinished delivery of an aggregate for a handler is
    claimable, which is what keeps each aggregate's events in order per handler.
    """
    now = timezone.now()
    lease_id = str(uuid.uuid4())
    with transaction.atomic():
        rows = list(
            _claimable(now).select_for_update(skip_locked=True).values_list("id", "handler")[:limit]
        )
        if rows:
            Delivery.objects.filter(id__in=[pk for pk, _ in rows]).update(
                lease_id=lease_id,
                lease_expires_at=now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS),
            )
    return lease_id, rows


def deliveries_publish(lease_id: str, rows: list[tuple[int, str]]) -> None:
    """Publish claimed deliveries: one message per queue per chunk, on one producer."""
    from outbox.tasks import deliver
    from shopflow.celery import app

    by_queue: dict[str, list[int]] = defaultdict(list)
    for pk, handler_name in rows:
        try:
            queue = get_handler(handler_name).queue
        except UnknownHandler:
            queue = "events"  # the worker dead-letters it with a clear error
        by_queue[queue].append(pk)
    chunk = settings.OUTBOX_CHUNK_SIZE
    with app.producer_or_acquire() as producer:
        for queue, ids in by_queue.items():
            for start in range(0, len(ids), chunk):
                deliver.apply_async(
                    args=(lease_id, ids[start : start + chunk]), queue=queue, producer=producer
                )


def drain(*, max_seconds: float | None = None) -> int:
    """Claim and publish batches until nothing is due or time is up; returns the count."""
    cache.delete(WAKE_KEY)
    deadline = time.monotonic() + (max_seconds or settings.OUTBOX_DRAIN_MAX_SECONDS)
    total = 0
    while True:
        started = time.monotonic()
        lease_id, rows = deliveries_claim(settings.OUTBOX_BATCH_SIZE)
        if not rows:
            return total
        deliveries_publish(lease_id, rows)
        RELAY_BATCH_SECONDS.observe(time.monotonic() - started)
        RELAY_CLAIMED.inc(len(rows))
        total += len(rows)
        if time.monotonic() > deadline:
            relay_wake()  # yield the worker; another drain carries on
            return total
