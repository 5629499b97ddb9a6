"""The relay: claim due deliveries in batches and publish them to the workers.

Any number of relays may run at once (two beats, a replay, a command): the
claim is `SELECT … FOR UPDATE SKIP LOCKED`, and a claimed delivery carries a
lease in PostgreSQL, so a message the broker loses comes back when the lease
expires instead of after Redis' visibility timeout (celery#5508, #4984).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Now

from outbox.metrics import RELAY_BATCH_SECONDS, RELAY_CLAIMED
from outbox.models import Delivery
from outbox.registry import UnknownHandler, get_handler
from shopflow.clock import db_later
from shopflow.local_work import keep_local, local_work_open

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
        if _wake_key_set():
            drain_outbox.apply_async(retry=False)
    except Exception:  # the beat-driven drain still runs; never fail the caller's commit
        logger.warning("relay wake-up failed; beat will drain", exc_info=True)


def _wake_key_set() -> bool:
    """Whether this caller is the one to ask for a drain (with the cache down, every caller is)."""
    try:
        return bool(cache.add(WAKE_KEY, 1, timeout=WAKE_KEY_TTL))
    except Exception:  # the wake key only coalesces wake-ups; without it, each one drains
        logger.warning("relay wake key unavailable; asking for a drain anyway", exc_info=True)
        return True


def _wake_key_clear() -> None:
    """Let the next commit ask for a drain; with the cache down, wake-ups just stay on."""
    try:
        cache.delete(WAKE_KEY)
    except Exception:  # the wake key is an optimisation: a cache outage must not stop drains
        logger.warning("clearing the relay wake key failed; draining anyway", exc_info=True)


def _claimable(after: int, keys: Collection[tuple[str, str]] | None) -> QuerySet[Delivery]:
    now = Now()
    earlier_unfinished = Delivery.objects.filter(
        handler=OuterRef("handler"),
        aggregate_key=OuterRef("aggregate_key"),
        id__lt=OuterRef("id"),
    ).exclude(status=Delivery.Status.DONE)
    claimable = (
        Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .filter(id__gt=after)
        .filter(~Exists(earlier_unfinished))
        .order_by("id")
    )
    if keys is not None:
        scoped = Q(pk__in=[])
        for handler, aggregate_key in keys:
            scoped |= Q(handler=handler, aggregate_key=aggregate_key)
        claimable = claimable.filter(scoped)
    return claimable


_TABLE = Delivery._meta.db_table
# The same claim as `_claimable` in one statement and one round trip: select and
# lock, then lease, with no transaction around it. `= ANY(ARRAY(…))` keeps the
# update on the primary key; a join to the CTE gets a hash join over the whole
# table, done rows included. RETURNING has no order. Times are the database's
# (see shopflow.clock): `statement_timestamp()` is what Django's `Now()` gives.
_CLAIM_TEMPLATE = f"""
WITH claimable AS (
    SELECT d.id FROM {_TABLE} d
    WHERE d.status = %(pending)s AND d.next_attempt_at <= statement_timestamp()
      AND (d.lease_expires_at IS NULL OR d.lease_expires_at < statement_timestamp())
      AND d.id > %(after)s{{scope}}
      AND NOT EXISTS (
          SELECT 1 FROM {_TABLE} e
          WHERE e.handler = d.handler AND e.aggregate_key = d.aggregate_key
            AND e.id < d.id AND e.status <> %(done)s
      )
    ORDER BY d.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {_TABLE} d SET lease_id = %(lease_id)s,
    lease_expires_at = statement_timestamp() + make_interval(secs => %(lease_seconds)s)
WHERE d.id = ANY(ARRAY(SELECT id FROM claimable))
RETURNING d.id, d.handler, d.started_lease_id IS NOT NULL
"""
_CLAIM_SQL = _CLAIM_TEMPLATE.format(scope="")
# Only the given (handler, aggregate) pairs: the unfinished-rows index finds them.
_CLAIM_KEYS_SQL = _CLAIM_TEMPLATE.format(
    scope="""
      AND (d.handler, d.aggregate_key) IN (
          SELECT * FROM unnest(%(handlers)s::text[], %(aggregates)s::text[]))"""
)


@dataclass(frozen=True)
class Claim:
    """Deliveries leased by one claim: (id, handler) pairs in id order, and the suspects.

    A suspect's earlier start ended without an outcome: its worker died
    mid-handler, maybe because of it. It travels alone (see `deliveries_publish`).
    """

    lease_id: str
    rows: list[tuple[int, str]]
    suspects: frozenset[int] = frozenset()


def deliveries_claim(
    limit: int, *, after: int = 0, keys: Collection[tuple[str, str]] | None = None
) -> tuple[str, list[tuple[int, str]]]:
    """Lease up to `limit` due deliveries with ids above `after` (of `keys` only, if given).

    Returns the lease id and (id, handler) pairs in id order. Only the oldest
    unfinished delivery of an aggregate for a handler is claimable, which is
    what keeps each aggregate's events in order per handler.
    """
    claim = _claim(limit, after=after, keys=keys)
    return claim.lease_id, claim.rows


def _claim(limit: int, *, after: int = 0, keys: Collection[tuple[str, str]] | None = None) -> Claim:
    lease_id = uuid.uuid4()
    if connection.vendor == "postgresql":
        pairs = list(keys or ())
        params = {
            "pending": Delivery.Status.PENDING.value, "done": Delivery.Status.DONE.value,
            "after": after, "limit": limit, "lease_id": lease_id,
            "lease_seconds": float(settings.OUTBOX_LEASE_SECONDS),
            "handlers": [h for h, _ in pairs], "aggregates": [a for _, a in pairs],
        }  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM_SQL if keys is None else _CLAIM_KEYS_SQL, params)
            claimed = sorted(cursor.fetchall())
    else:
        with transaction.atomic():
            claimed = list(
                _claimable(after, keys)
                .select_for_update(skip_locked=True)
                .values_list("id", "handler", "started_lease_id")[:limit]
            )
            if claimed:
                Delivery.objects.filter(id__in=[pk for pk, _, _ in claimed]).update(
                    lease_id=lease_id, lease_expires_at=db_later(settings.OUTBOX_LEASE_SECONDS)
                )
    rows = [(pk, handler) for pk, handler, _ in claimed]
    suspects = frozenset(pk for pk, _, started in claimed if started)
    return Claim(str(lease_id), rows, suspects)


def deliveries_publish(
    lease_id: str,
    rows: list[tuple[int, str]],
    suspects: Collection[int] = (),
    *,
    shared: bool = False,
) -> None:
    """Publish claimed deliveries: one message per queue per chunk.

    Each suspect goes in a message of its own: if it kills its worker again, it
    takes no innocent delivery down with it, and those are handled within a lease.
    `shared` (workers consume every handler queue): one message per chunk, to the
    first of its queues in OUTBOX_SHARED_QUEUE_ORDER; a worker that does not
    consume a delivery's queue hands it on (`outbox.delivery.deliveries_process`).
    """
    from outbox.tasks import deliver
    from shopflow.broker import TaskMessage, tasks_publish

    messages = [
        TaskMessage((lease_id, batch), name, _argsrepr(lease_id, batch))
        for name, ids in _by_queue(rows, shared=shared).items()
        for batch in _batches(ids, settings.OUTBOX_CHUNK_SIZE, suspects)
    ]
    tasks_publish(deliver, messages)  # on Redis from a template: a fifth of apply_async's CPU


def _by_queue(rows: list[tuple[int, str]], *, shared: bool) -> dict[str, list[int]]:
    """The deliveries' ids by the queue their message goes to."""
    by_queue: dict[str, list[int]] = defaultdict(list)
    for pk, handler_name in rows:
        by_queue[queue_of(handler_name)].append(pk)
    if not shared or len(by_queue) < 2:
        return by_queue
    first = min(by_queue, key=queue_rank)
    return {first: sorted(pk for ids in by_queue.values() for pk in ids)}


def queue_rank(name: str) -> int:
    """Where `name` stands in OUTBOX_SHARED_QUEUE_ORDER (saga first); unlisted queues last."""
    order = list(settings.OUTBOX_SHARED_QUEUE_ORDER)
    return order.index(name) if name in order else len(order)


def _argsrepr(lease_id: str, batch: list[int]) -> str:
    """How logs show the arguments (Celery's saferepr of 50 ids costs more than a publish)."""
    return f"('{lease_id}', [{batch[0]}..{batch[-1]}] ({len(batch)} ids))"


def queue_of(handler_name: str) -> str:
    """The queue a handler's deliveries are published to (`subscribe(queue=…)`)."""
    try:
        return get_handler(handler_name).queue
    except UnknownHandler:
        return "events"  # the worker retries it until code that knows it runs there


def _batches(ids: list[int], size: int, suspects: Collection[int]) -> list[list[int]]:
    """`ids` in chunks of `size`, each suspect in a chunk of its own."""
    innocent = [pk for pk in ids if pk not in suspects]
    chunks = [innocent[start : start + size] for start in range(0, len(innocent), size)]
    return chunks + [[pk] for pk in ids if pk in suspects]


def deliveries_dispatch(lease_id: str, rows: list[tuple[int, str]]) -> None:
    """Hand deliveries a transaction leased to itself to this process's dispatcher, on commit.

    The dispatcher is a thread: the committing thread goes on at once, and what
    several commits hand over while it publishes goes out together, one message
    per queue per chunk, so a busy producer costs the workers fewer messages.

    In a worker's task (`shopflow.local_work`), the deliveries of queues this
    worker consumes are handled by it right after the task, without a message.
    """
    _hand_over(lease_id, rows)


def _hand_over(lease_id: str, rows: list[tuple[int, str]]) -> None:
    """To the dispatcher thread, or kept by this worker's task per queue (`deliveries_dispatch`)."""
    if not local_work_open():
        _dispatch_queue().put((lease_id, rows))
        return
    by_queue: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in rows:
        by_queue[queue_of(row[1])].append(row)
    for name, queued in by_queue.items():
        _keep(lease_id, name, queued)


class _Kept(threading.local):
    """Deliveries a worker's task keeps, per queue, until they run: later commits join them.

    Merging is safe for the order as the dispatcher's is (`_dispatch_batch`): no
    two deliveries of one (handler, aggregate) are ever leased together.
    """

    def __init__(self) -> None:
        # queue -> [(lease id, rows)], each lease's rows apart: a broker error hands
        # each lease back on its own (`_lease_return`)
        self.rows: dict[str, list[tuple[str, list[tuple[int, str]]]]] = {}


_kept = _Kept()


def _keep(lease_id: str, name: str, rows: list[tuple[int, str]]) -> None:
    if (waiting := _kept.rows.get(name)) is not None:
        waiting.append((lease_id, rows))
        return
    _kept.rows[name] = [(lease_id, rows)]
    keep_local(name, run=partial(_kept_run, name), publish=partial(_kept_publish, name))


def _kept_run(name: str) -> None:
    """Handle the kept deliveries of a queue in this worker, as their message would."""
    from outbox.delivery import deliveries_process

    handed = _kept.rows.pop(name)
    ids = sorted(pk for _, rows in handed for pk, _ in rows)
    try:
        deliveries_process(handed[0][0], ids)
    except Exception:  # what is done is skipped by the message's worker
        logger.warning("kept deliveries failed here; publishing them", exc_info=True)
        for item in handed:
            _dispatch_queue().put(item)
    else:
        RELAY_CLAIMED.inc(len(ids))


def _kept_publish(name: str) -> None:
    for item in _kept.rows.pop(name, []):
        _dispatch_queue().put(item)


_dispatcher: tuple[int, queue.SimpleQueue] | None = None  # (pid, its queue)
_dispatcher_lock = threading.Lock()


def _dispatch_queue() -> queue.SimpleQueue:
    """This process's dispatcher queue, its thread started on first use (again after a fork)."""
    global _dispatcher
    with _dispatcher_lock:
        if _dispatcher is None or _dispatcher[0] != os.getpid():
            pending: queue.SimpleQueue = queue.SimpleQueue()
            thread = threading.Thread(
                target=_dispatch_forever, args=(pending,), name="outbox-dispatch", daemon=True
            )
            thread.start()
            atexit.register(_dispatch_flush, pending, thread)
            _dispatcher = (os.getpid(), pending)
        return _dispatcher[1]


def _dispatch_forever(pending: queue.SimpleQueue) -> None:
    while True:
        handed = _taken(pending, [pending.get()])
        if None not in handed and _workers_behind(handed):
            # Messages wait in the broker anyway: gather more commits into each one.
            time.sleep(settings.OUTBOX_DISPATCH_LINGER_SECONDS)
            handed = _taken(pending, handed)
        if None in handed:  # the process is exiting (`_dispatch_flush`)
            _dispatch_batch([item for item in handed if item is not None])
            return
        _dispatch_batch(handed)


def _taken(pending: queue.SimpleQueue, handed: list) -> list:
    """`handed` plus whatever else is waiting, without blocking."""
    while not pending.empty():
        handed.append(pending.get_nowait())
    return handed


def _workers_behind(handed: list[tuple[str, list[tuple[int, str]]]]) -> bool:
    """Whether a queue these deliveries go to holds OUTBOX_DISPATCH_LINGER_DEPTH untaken messages.

    As this process's last publish to it found it (Redis' LPUSH answers with the
    queue's length): no round trip before a publish, and a queue that is only
    momentarily non-empty, a message a worker is about to take, costs no linger.
    """
    from shopflow.broker import queue_depth_seen

    if not settings.OUTBOX_DISPATCH_LINGER_SECONDS:
        return False
    rows = [row for _, claimed in handed for row in claimed]
    queues = _by_queue(rows, shared=settings.OUTBOX_DISPATCH_SHARED_QUEUES)
    # The depth seen includes the message that publish added.
    return any(queue_depth_seen(name) > settings.OUTBOX_DISPATCH_LINGER_DEPTH for name in queues)


def _dispatch_batch(handed: list[tuple[str, list[tuple[int, str]]]]) -> None:
    """Publish what commits handed over; on a broker error, hand the leases back to the drain.

    Merging claims is safe for the order of an aggregate: a delivery is only
    leased at commit when no earlier one of its (handler, aggregate) is
    unfinished, so no two of them are ever in flight together. The message
    names the first lease; workers do not rely on it (`deliveries_process`).
    """
    if not handed:
        return
    rows = sorted(row for _, claimed in handed for row in claimed)
    try:
        deliveries_publish(handed[0][0], rows, shared=settings.OUTBOX_DISPATCH_SHARED_QUEUES)
    except Exception:
        logger.warning("dispatch at commit failed; the drain sends them", exc_info=True)
        for lease_id, claimed in handed:
            _lease_return(lease_id, [pk for pk, _ in claimed])
    else:
        RELAY_CLAIMED.inc(len(rows))


def _dispatch_flush(pending: queue.SimpleQueue, thread: threading.Thread) -> None:
    """At exit, publish what is still handed over (else it waits for its lease to expire)."""
    pending.put(None)
    thread.join(timeout=5)


def _lease_return(lease_id: str, ids: list[int]) -> None:
    """Make unpublished deliveries claimable again at once (only under this lease)."""
    try:
        Delivery.objects.filter(
            id__in=ids,
            status=Delivery.Status.PENDING,
            lease_id=lease_id,
            started_lease_id__isnull=True,
        ).update(lease_id=None, lease_expires_at=None)
    except Exception:
        logger.warning("returning a dispatch lease failed; it expires instead", exc_info=True)
    finally:
        connection.close()  # the dispatcher thread's own connection; it is seldom needed


def successors_relay(keys: Collection[tuple[str, str]]) -> int:
    """Claim and publish the next due delivery of each (handler, aggregate) in `keys`.

    A worker calls this for the aggregates it has just handled: their next
    events go out at once, instead of waiting for a drain to walk the backlog.
    """
    if not keys:
        return 0
    claim = _claim(len(keys), keys=keys)
    if not claim.rows:
        return 0
    published = claim.rows
    if local_work_open():  # in a worker's task: kept by it where it consumes their queue
        innocent = [row for row in claim.rows if row[0] not in claim.suspects]
        if innocent:  # counted where they leave (`_kept_run`, `_dispatch_batch`)
            _hand_over(claim.lease_id, innocent)
        published = [row for row in claim.rows if row[0] in claim.suspects]
    if published:  # a suspect alone, by message (see `deliveries_publish`)
        deliveries_publish(claim.lease_id, published, claim.suspects)
        RELAY_CLAIMED.inc(len(published))
    return len(claim.rows)


def drain(*, max_seconds: float | None = None) -> int:
    """Claim and publish batches until nothing is due or time is up; returns the count.

    One pass in id order: each claim starts after the last id claimed, and a
    short batch ends the drain. What becomes claimable behind the pass is
    covered elsewhere: a commit after the WAKE_KEY is cleared asks for another
    drain, workers relay their aggregates' successors, beat's drain takes
    retries and expired leases.
    """
    _wake_key_clear()
    deadline = time.monotonic() + (max_seconds or settings.OUTBOX_DRAIN_MAX_SECONDS)
    limit = settings.OUTBOX_BATCH_SIZE
    total = after = 0
    while True:
        started = time.monotonic()
        claim = _claim(limit, after=after)
        rows = claim.rows
        if rows:
            deliveries_publish(claim.lease_id, rows, claim.suspects)
            RELAY_BATCH_SECONDS.observe(time.monotonic() - started)
            RELAY_CLAIMED.inc(len(rows))
            total += len(rows)
            after = rows[-1][0]
        if len(rows) < limit:
            return total
        if time.monotonic() > deadline:
            relay_wake()  # yield the worker; another drain carries on
            return total
