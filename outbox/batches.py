"""The batch path: a message's deliveries to `batch=True` handlers, in one transaction.

One statement commits every start (attempts + 1 under each delivery's lease),
then one transaction flips them all pending->done in one statement and runs
their handlers; only the deliveries the flip returned are handled, so each is
still handled once in effect: a duplicate message of the batch finds every
start taken, and one of another claim waits on the row locks, then finds the
rows done. When any handler of the batch raises, the whole transaction rolls
back and each started delivery runs again alone (`run_started`), so a poison
event fails by itself, with its retry, backoff and dead letter as always, and
its neighbours are done; one of its own aggregate behind it is handed back
unrun, to follow it. Suspects never batch: each runs alone and last. A
worker that dies mid-batch leaves every delivery of the batch started; each
comes back after its lease as a suspect and runs alone, so an innocent one
costs one attempt and waits one lease, and only the killer is buried.

PostgreSQL only; on the embedded SQLite default every delivery runs alone.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass

from django.db import connection, transaction
from pydantic import ValidationError

from outbox.delivery import (
    QUICK_COMMIT,
    Outcome,
    context_of,
    handler_call,
    log_outcome,
    run_started,
)
from outbox.events import DomainEvent, UnknownEventType
from outbox.models import Delivery
from outbox.registry import Handler, UnknownHandler, get_handler
from shopflow.clock import db_now_sql

logger = logging.getLogger("shopflow.outbox.delivery")


@dataclass(frozen=True)
class Batched:
    """A delivery that may run in a batch, with its handler and its event read."""

    delivery: Delivery
    handler: Handler
    event: DomainEvent


def batchable(deliveries: list[Delivery]) -> tuple[list[Batched], list[Delivery]]:
    """Split a message's deliveries: those to run in batches (two or more of one handler), the rest.

    A batch holds one handler's deliveries only: a shared message (one commit's
    deliveries to several queues) must not tie one handler's transaction to
    another's locks or rollbacks (the saga's start to the analytics projection,
    which a rebuild locks for its whole replay).
    """
    by_handler: dict[str, list[Batched]] = defaultdict(list)
    alone: list[Delivery] = []
    for delivery in deliveries:
        item = _batched(delivery)
        if item is None:
            alone.append(delivery)
        else:
            by_handler[delivery.handler].append(item)
    batched: list[Batched] = []
    for _, items in sorted(by_handler.items(), key=lambda pair: _turn(pair[1][0].delivery)):
        if len(items) < 2:  # a batch of one is one delivery: the plain path is as cheap
            alone.extend(item.delivery for item in items)
        else:
            batched.extend(items)
    return batched, sorted(alone, key=_turn)


def _turn(delivery: Delivery) -> tuple[int, int]:
    """Where a delivery of a shared message runs: its queue's turn (saga first), then id order.

    Reordering across handlers is safe: an aggregate's order holds per handler, and one
    handler's deliveries share a queue, so they keep their id order.
    """
    from outbox.relay import queue_of, queue_rank

    return queue_rank(queue_of(delivery.handler)), delivery.pk


def batch_process(items: list[Batched]) -> list[Outcome]:
    """Each handler's items as one batch (`_batch_process`); outcomes in the order of `items`."""
    by_handler: dict[str, list[Batched]] = defaultdict(list)
    for item in items:
        by_handler[item.delivery.handler].append(item)
    outcomes: dict[int, Outcome] = {}
    for batch in by_handler.values():
        done = _batch_process(batch)
        outcomes.update(zip([item.delivery.pk for item in batch], done, strict=True))
    return [outcomes[item.delivery.pk] for item in items]


def _batched(delivery: Delivery) -> Batched | None:
    if connection.vendor != "postgresql" or delivery.started_lease_id is not None:
        return None  # a suspect runs alone and last
    try:
        handler = get_handler(delivery.handler)
        event = delivery.event.to_event()
    except (UnknownHandler, UnknownEventType, ValidationError):
        return None  # version skew: the plain path retries it
    return Batched(delivery, handler, event) if handler.batch else None


def _batch_process(items: list[Batched]) -> list[Outcome]:
    """Start, flip and handle `items` together; alone again after a failure. Outcomes in order."""
    if not items:
        return []
    begun = time.monotonic()
    running = _batch_start(items)
    outcomes = {item.delivery.pk: Outcome("skipped") for item in items}
    try:
        with transaction.atomic():
            flipped = _batch_mark_done(running)
            for item in running:
                if item.delivery.pk in flipped:
                    handler_call(item.handler, item.event, context_of(item.delivery))
    except Exception:
        logger.warning(
            "a batch of %d deliveries failed; running them one by one", len(running), exc_info=True
        )
        return _alone_again(items, running, outcomes)
    outcomes.update(dict.fromkeys(flipped, Outcome("done")))
    seconds = (time.monotonic() - begun) / len(items)
    for item in items:
        log_outcome(item.delivery, outcomes[item.delivery.pk], seconds)
    return [outcomes[item.delivery.pk] for item in items]


def _alone_again(
    items: list[Batched], running: list[Batched], outcomes: dict[int, Outcome]
) -> list[Outcome]:
    """After a rolled-back batch: each started delivery in its own transaction, start kept.

    A delivery behind one of its (handler, aggregate) that did not end done is
    handed back instead of run, so an aggregate's events never overtake each
    other (an order's cancellation its creation). The relay never sends two of
    a pair in one message, so this is only for a message made otherwise.
    """
    started = {item.delivery.pk for item in running}
    held_up: set[tuple[str, str]] = set()  # pairs with a delivery not done in this message
    for item in items:
        begun, pk = time.monotonic(), item.delivery.pk
        pair = (item.delivery.handler, item.delivery.aggregate_key)
        if pk in started and pair in held_up:
            _hand_back(item)
        elif pk in started:
            outcomes[pk] = run_started(item.delivery, item.handler, item.event)
        if outcomes[pk].status != "done":
            held_up.add(pair)
        log_outcome(item.delivery, outcomes[pk], time.monotonic() - begun)
    return [outcomes[item.delivery.pk] for item in items]


_TABLE = Delivery._meta.db_table
# Each delivery under the lease it was read with: a message may carry several
# leases (the dispatcher merges commits), and a row leased anew since belongs to
# that claim. Quick commit: as a lone start (`outbox.delivery._start`).
_CLAIMED = "unnest(%s::bigint[], %s::uuid[]) AS claimed (id, lease_id)"
# Fresh starts only: a suspect (started under an older lease) never batches, and a
# row started under its current lease is a duplicate message's.
_BATCH_START_TEMPLATE = f"""
UPDATE {_TABLE} d SET attempts = d.attempts + 1, started_lease_id = d.lease_id{{source}}
WHERE d.id = claimed.id AND d.lease_id = claimed.lease_id AND d.status = %s
  AND d.started_lease_id IS NULL
RETURNING d.id, d.attempts"""
_BATCH_START_SQL = _BATCH_START_TEMPLATE.format(source=f"\nFROM {_CLAIMED}")
_BATCH_START_QUICK_SQL = _BATCH_START_TEMPLATE.format(source=f"{QUICK_COMMIT},\n    {_CLAIMED}")
_BATCH_MARK_DONE_SQL = f"""
UPDATE {_TABLE} d SET status = %s, done_at = {{now}}, lease_id = NULL, lease_expires_at = NULL,
    started_lease_id = NULL
FROM {_CLAIMED}
WHERE d.id = claimed.id AND d.lease_id = claimed.lease_id AND d.status = %s
RETURNING d.id"""


# Undo a start whose handler never ran and let go of the lease: the relay claims the
# delivery again once the one before it is done, and the attempt is not counted.
_HAND_BACK_SQL = f"""
UPDATE {_TABLE} d SET attempts = d.attempts - 1, started_lease_id = NULL, lease_id = NULL,
    lease_expires_at = NULL
FROM {_CLAIMED}
WHERE d.id = claimed.id AND d.lease_id = claimed.lease_id AND d.status = %s
  AND d.started_lease_id = d.lease_id"""


def _claimed(items: list[Batched]) -> list[object]:
    lease = Delivery._meta.get_field("lease_id")
    ids = [item.delivery.pk for item in items]
    return [ids, [lease.get_db_prep_value(item.delivery.lease_id, connection) for item in items]]


def _batch_start(items: list[Batched]) -> list[Batched]:
    """Commit the starts of `items` in one statement; those started, attempts set."""
    # Inside a transaction (a test's), the setting would last until its commit.
    sql = _BATCH_START_SQL if connection.in_atomic_block else _BATCH_START_QUICK_SQL
    with connection.cursor() as cursor:
        cursor.execute(sql, [*_claimed(items), Delivery.Status.PENDING.value])
        attempts = dict(cursor.fetchall())
    started = [item for item in items if item.delivery.pk in attempts]
    for item in started:
        item.delivery.attempts = attempts[item.delivery.pk]
    return started


def _batch_mark_done(items: list[Batched]) -> set[int]:
    """The batch's flip, first statement of its transaction: the ids it flipped."""
    if not items:
        return set()
    params = [Delivery.Status.DONE.value, *_claimed(items), Delivery.Status.PENDING.value]
    with connection.cursor() as cursor:
        cursor.execute(_BATCH_MARK_DONE_SQL.format(now=db_now_sql()), params)
        return {row[0] for row in cursor.fetchall()}


def _hand_back(item: Batched) -> None:
    """Undo the start of a delivery whose handler did not run, and release its lease."""
    with connection.cursor() as cursor:
        cursor.execute(_HAND_BACK_SQL, [*_claimed([item]), Delivery.Status.PENDING.value])
        if cursor.rowcount == 1:
            item.delivery.attempts -= 1
