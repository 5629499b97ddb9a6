"""Run a saga one step at a time, deciding every move from its persisted state.

A move is: claim (a short transaction under the saga's row lock), perform the
step's action or compensation outside any transaction, then record the outcome
(another short locked transaction), which also writes what a remote action's
provider answered (`definitions.Answer`). A local action (`Step.local`) is
performed inside the transaction that claims it, and recorded there. When the
next move is due at once, the recording transaction also claims it, and the
same call performs it, up to `moves` in a row (the `sagas.advance` task passes
SAGA_MOVES_PER_TASK); otherwise, or past that budget, the next move is a new
task scheduled after commit. Each transaction locks the saga and reads it with
the database's time, then reads its steps, and writes what it changed in one
statement (`sagas/store.py`: named SQL on PostgreSQL, the ORM elsewhere).
Duplicated or stale calls are harmless: a claim gives the step a lease and a
fencing token, and only the holder of the latest token may write what it did
or record its outcome (`sagas/fencing.py`). A lost call is brought back by
the watchdog, which looks at `Saga.wake_at`. Every instant compared across
processes (leases, backoffs, `wake_at`) is the database's, read with the
saga's row lock.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction

from sagas.definitions import Answer, PermanentFailure, SagaDefinition, get_definition
from sagas.fencing import Fence, StaleAttempt, lease_kept
from sagas.models import Saga, SagaStep
from sagas.store import SAGA_FIELDS, STEP_FIELDS, store

logger = logging.getLogger("shopflow.sagas")


@dataclass(frozen=True)
class Move:
    saga_id: UUID
    step_index: int
    compensating: bool
    attempt: int
    # The step's fencing token this move was claimed with.
    fence: int = 0
    # The saga as claimed, so performing the move need not read it again.
    saga: Saga | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    result: dict[str, Any] | None = None
    permanent_reason: str = ""
    error: str = ""
    # A remote action's answer, written by the transaction that records the move.
    answer: Answer | None = None


@dataclass
class _Budget:
    """The moves one call may still make, and whether it makes local ones where they are claimed."""

    moves: int
    local_here: bool = True
    # The transaction under way made a local move: if it fails, it is run again without.
    made_here: bool = False


@dataclass
class _Held:
    """A saga whose row this transaction has locked, its steps and the database's time."""

    saga: Saga
    definition: SagaDefinition
    steps: dict[int, SagaStep]
    now: datetime
    # Steps claimed or recorded in this transaction: saved once, before commit.
    changed: set[int] = field(default_factory=set)
    # The saga's and the steps' fields as read, so that only what changed is written.
    read: dict[int | None, dict[str, Any]] = field(default_factory=dict)
    # Whether `called_off` was asked in this transaction: a step boundary asks it once.
    asked_called_off: bool = False
    # Whether this transaction limited its lock waits (it makes a local move).
    waits_limited: bool = False


def saga_advance(saga_id: UUID, *, moves: int = 1) -> None:
    """Make the saga's next moves that nobody else is making, up to `moves` in a row."""
    budget = _Budget(moves)
    move = _claim(saga_id, budget)
    while move is not None:
        budget.moves -= 1
        move = _record(move, _perform(move), claim_next=budget.moves > 0, budget=budget)


def schedule_advance(saga: Saga, *, now: datetime, delay: float = 0.0) -> None:
    """Ask for the saga's next move after commit; the watchdog covers a lost message.

    `now` is the database's time (`db_now()`, or `sagas.store.locked()`'s), as every instant is.
    """
    saga.wake_at = now + timedelta(seconds=delay + settings.SAGA_WAKE_GRACE_SECONDS)
    if delay > settings.SAGA_MAX_COUNTDOWN:
        return  # a long wait stays a row for the watchdog, not a broker countdown (celery#2599)
    from sagas.tasks import advance_ask, advance_saga

    saga_id = str(saga.pk)
    if delay:
        ask = partial(advance_saga.apply_async, (saga_id,), countdown=delay)
    else:  # in a worker consuming the saga queue, right after its task (shopflow.local_work)
        ask = partial(advance_ask, saga_id)
    transaction.on_commit(ask, robust=True)


def _backoff(attempt: int) -> float:
    ceiling = min(settings.SAGA_BACKOFF_MAX, settings.SAGA_BACKOFF_BASE * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _lock(saga_id: UUID) -> _Held | None:
    """Lock the saga's row (with the database's time), then read its steps.

    Two statements (one round trip with client-side binding), not one join: a
    transaction that waited for the saga's lock sees the saga as the lock
    holder committed it, but in READ COMMITTED the rows joined to it would
    still be those of the join's own snapshot (PostgreSQL re-checks only the
    locked row), so a duplicate advance would claim a step its twin had just
    claimed. The steps' statement takes its snapshot after the lock is held.

    Only the saga's row is locked: a step's row is locked by its attempt's fence
    while the action writes, and the engine must not wait for it while holding
    the saga (the fence holder never needs the saga).
    """
    locked_saga = store().lock(saga_id)
    if locked_saga is None:
        return None
    saga, rows, now = locked_saga
    for step in rows:
        step.saga = saga  # one instance, as `saga.steps` would share
    definition = get_definition(saga.definition)
    held = _Held(saga, definition, {step.index: step for step in rows}, now)
    held.read = {None: _fields(saga, SAGA_FIELDS)}
    held.read.update((step.index, _fields(step, STEP_FIELDS)) for step in rows)
    return held


def _save(held: _Held, *, touch: bool) -> None:
    """Write what changed since this transaction last wrote: claimed or recorded steps, the saga.

    With `touch`, the saga is written (its `updated_at`, which the watchdog
    reads) even if nothing else of it changed, as recording a move does.
    """
    steps = [(held.steps[i], _changed(held.steps[i], held.read[i])) for i in sorted(held.changed)]
    saga_fields = _changed(held.saga, held.read[None])
    if steps or saga_fields or touch:
        store().save((held.saga, saga_fields), steps)
    held.read[None] = _fields(held.saga, SAGA_FIELDS)
    held.read.update((i, _fields(held.steps[i], STEP_FIELDS)) for i in held.changed)
    held.changed.clear()


def _fields(instance: Saga | SagaStep, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(instance, name) for name in names}


def _changed(instance: Saga | SagaStep, read: dict[str, Any]) -> list[str]:
    return [name for name, value in read.items() if getattr(instance, name) != value]


def _lease(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.SAGA_STEP_LEASE_SECONDS)


def _busy(step: SagaStep, now: datetime) -> bool:
    """In flight elsewhere, or waiting out its backoff."""
    if step.lease_expires_at and step.lease_expires_at > now:
        return True
    return bool(step.next_attempt_at and step.next_attempt_at > now)


# --- claim -----------------------------------------------------------------------------


def _claim(saga_id: UUID, budget: _Budget | None = None) -> Move | None:
    """Claim the saga's next move; within `budget`, make local moves in the same transaction."""
    return _here_or_apart(lambda: _claim_in_transaction(saga_id, budget), budget)


def _claim_in_transaction(saga_id: UUID, budget: _Budget | None) -> Move | None:
    with transaction.atomic():
        held = _lock(saga_id)
        if held is None or held.saga.status not in Saga.ACTIVE:
            return None
        move = _go_on(held, _claim_held(held), budget)
        _save(held, touch=False)  # a duplicate that finds the step busy writes nothing
        return move


def _claim_held(held: _Held) -> Move | None:
    """Claim the next move of the saga, whose row this transaction has locked.

    Changes the saga and steps in memory only: `_save` writes them, once.
    """
    saga, definition, steps, now = held.saga, held.definition, held.steps, held.now
    if saga.status == Saga.Status.RUNNING:
        step = steps.get(saga.current_step)
        move = _claim_action(held, step)
    elif saga.status == Saga.Status.COMPENSATING:
        undo = [s for s in steps.values() if _to_undo(s)]
        step = max(undo, key=lambda s: s.index, default=None)
        move = _claim_compensation(saga, definition, step, now)
    else:
        return None
    if move is not None:
        held.changed.add(move.step_index)
    return move


def _to_undo(step: SagaStep) -> bool:
    """Done, being undone, or in doubt: its last attempt failed transiently and may have acted."""
    if step.status in (SagaStep.Status.DONE, SagaStep.Status.COMPENSATING):
        return True
    return step.in_doubt and step.status in (SagaStep.Status.PENDING, SagaStep.Status.FAILED)


def _claim_action(held: _Held, step: SagaStep | None) -> Move | None:
    saga, definition, now = held.saga, held.definition, held.now
    interrupted = step is not None and step.status == SagaStep.Status.RUNNING
    if step is not None and _busy(step, now) and (interrupted or not saga.cancel_requested):
        return None
    # Completing asks `on_completed`, which refuses a called-off saga itself.
    boundary = step is not None and not interrupted and not saga.cancel_requested
    if boundary and not held.asked_called_off:
        held.asked_called_off = True
        if definition.called_off(saga):
            saga.cancel_requested = True
    # A step whose worker died may have acted: run it again (idempotently) even
    # when cancelled, so its effect is known and can be compensated.
    if saga.cancel_requested and not interrupted:
        _start_compensation(saga, now)
        return None
    if step is None:
        _complete(saga, definition, now)
        return None
    # An attempt cut off by its lease recorded nothing, and may have acted.
    step.in_doubt = step.in_doubt or interrupted
    step.status = SagaStep.Status.RUNNING
    step.attempts += 1
    step.started_at = step.started_at or now
    return _claimed(saga, step, now, compensating=False, attempt=step.attempts)


def _claimed(
    saga: Saga, step: SagaStep, now: datetime, *, compensating: bool, attempt: int
) -> Move:
    """Lease the step to a new attempt with the next fencing token (saved by `_save`)."""
    step.fence += 1
    step.lease_expires_at = _lease(now)
    step.next_attempt_at = None
    saga.wake_at = step.lease_expires_at
    return Move(saga.pk, step.index, compensating, attempt, fence=step.fence, saga=saga)


def _claim_compensation(
    saga: Saga, definition: SagaDefinition, step: SagaStep | None, now: datetime
) -> Move | None:
    if step is None:
        _finish_compensation(saga, definition, now)
        return None
    # An in-doubt action's own backoff does not hold its compensation back.
    if step.status != SagaStep.Status.COMPENSATING:
        step.next_attempt_at = None
    if _busy(step, now):
        return None
    step.status = SagaStep.Status.COMPENSATING
    step.compensation_attempts += 1
    return _claimed(saga, step, now, compensating=True, attempt=step.compensation_attempts)


def _start_compensation(saga: Saga, now: datetime) -> None:
    saga.status = Saga.Status.COMPENSATING
    schedule_advance(saga, now=now)


def _complete(saga: Saga, definition: SagaDefinition, now: datetime) -> None:
    if not definition.on_completed(saga):
        saga.cancel_requested = True
        _start_compensation(saga, now)
        return
    saga.status = Saga.Status.COMPLETED
    saga.wake_at = None
    saga.finished_at = now


def _finish_compensation(saga: Saga, definition: SagaDefinition, now: datetime) -> None:
    definition.on_compensated(saga)
    saga.status = Saga.Status.COMPENSATED
    saga.wake_at = None
    saga.finished_at = now


# --- perform ---------------------------------------------------------------------------


def _perform(move: Move) -> Outcome:
    saga = move.saga or Saga.objects.get(pk=move.saga_id)
    step = get_definition(saga.definition).steps[move.step_index]
    try:
        with lease_kept(move.saga_id, move.step_index, move.fence):
            if move.compensating:
                step.compensation(saga)
                return Outcome(ok=True)
            fence = Fence(move.saga_id, move.step_index, move.fence)
            done = step.action(saga, fence)
            if isinstance(done, Answer):
                return Outcome(ok=True, answer=done)
            return Outcome(ok=True, result=done or {})
    except PermanentFailure as exc:
        return Outcome(ok=False, permanent_reason=exc.reason, error=_describe(exc))
    except StaleAttempt as exc:
        logger.info("saga %s step %s: %s", move.saga_id, step.name, exc)
        return Outcome(ok=False, error=_describe(exc))
    except Exception as exc:  # transient by default: retried, then given up with a reason
        logger.warning("saga %s step %s failed: %s", move.saga_id, step.name, _describe(exc))
        return Outcome(ok=False, error=_describe(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


# --- local moves, made in the engine's transaction -------------------------------------


class _LocalMoveFailed(Exception):
    """A local action failed other than for good: its transaction is rolled back, whole."""


def _go_on(held: _Held, move: Move | None, budget: _Budget | None) -> Move | None:
    """Make `move` here if its step is local, then each next one claimed so, within `budget`.

    Returns the first move left to perform outside this transaction (a remote
    one), if one was claimed.
    """
    while move is not None and _makes_here(held, move, budget):
        budget.moves -= 1
        step = held.steps[move.step_index]
        delay = _record_action(held, step, _perform_here(held, move, budget))
        move = _after(held, delay, claim_next=budget.moves > 0)
    return move


def _makes_here(held: _Held, move: Move, budget: _Budget | None) -> bool:
    if budget is None or not budget.local_here or budget.moves <= 0 or move.compensating:
        return False
    return held.definition.steps[move.step_index].local


def _perform_here(held: _Held, move: Move, budget: _Budget) -> Outcome:
    """Perform a local action in the claiming transaction, the claim written first.

    Writing the claim first locks the step's row with the new token, so an
    older attempt's fenced write (a classic attempt that outlived its lease)
    waits for this transaction and then finds itself stale, instead of
    holding the row this transaction must write. No lease renewal: the lease
    and the record commit together. The saga's lock is held meanwhile, so the
    transaction waits for no lock longer than SAGA_LOCAL_MOVE_LOCK_TIMEOUT: a
    cancellation or a twin advance must not queue behind a slow reservation.
    A permanent failure is recorded with what the action wrote; any other
    failure, a lock-wait timeout included (the transaction may be broken),
    rolls the whole transaction back (`_here_or_apart` then runs it again with
    the move claimed here and made apart).
    """
    budget.made_here = True
    if not held.waits_limited:
        held.waits_limited = True
        store().limit_lock_waits(settings.SAGA_LOCAL_MOVE_LOCK_TIMEOUT)
    _save(held, touch=False)
    step = held.definition.steps[move.step_index]
    fence = Fence(move.saga_id, move.step_index, move.fence)
    try:
        done = step.action(held.saga, fence)
        return Outcome(ok=True, result=(done.record() if isinstance(done, Answer) else done) or {})
    except PermanentFailure as exc:
        if connection.needs_rollback:
            raise _LocalMoveFailed(_describe(exc)) from exc
        return Outcome(ok=False, permanent_reason=exc.reason, error=_describe(exc))
    except Exception as exc:
        raise _LocalMoveFailed(_describe(exc)) from exc


def _here_or_apart(run: Callable[[], Move | None], budget: _Budget | None) -> Move | None:
    """Run an engine transaction; if it fails after making a local move, once more without.

    The failed transaction left nothing behind, so running it again, each local
    move then claimed, performed and recorded as a remote one is, does what it
    would have done.
    """
    if budget is None or not budget.local_here:
        return run()
    moves, budget.made_here = budget.moves, False
    try:
        return run()
    except Exception as exc:
        if not budget.made_here:
            raise
        logger.warning("a local move failed where it was claimed; made apart: %s", _describe(exc))
        budget.moves, budget.local_here = moves, False
        return run()


# --- record ----------------------------------------------------------------------------

# The saga's next move is due at once (as opposed to after a backoff, or never).
_NOW = 0.0


def _record(
    move: Move, outcome: Outcome, *, claim_next: bool = False, budget: _Budget | None = None
) -> Move | None:
    """Record the move's outcome; with `claim_next`, claim the next move if it is due at once.

    Within `budget`, local moves so claimed are made in the same transaction.
    """
    return _here_or_apart(lambda: _record_in_transaction(move, outcome, claim_next, budget), budget)


def _record_in_transaction(
    move: Move, outcome: Outcome, claim_next: bool, budget: _Budget | None
) -> Move | None:
    reconcile, next_move = False, None
    with transaction.atomic():
        held = _lock(move.saga_id)
        if held is None:
            return None
        step = held.steps[move.step_index]
        phase = SagaStep.Status.COMPENSATING if move.compensating else SagaStep.Status.RUNNING
        if step.fence != move.fence or step.status != phase:
            # Stale: a later attempt owns the step, or it has moved on.
            reconcile = not move.compensating and _undoing(step)
        else:
            if move.compensating:
                delay = _record_compensation(held, step, outcome)
            else:
                delay = _record_action(held, step, _answer_written(outcome))
            next_move = _go_on(held, _after(held, delay, claim_next=claim_next), budget)
            _save(held, touch=True)
    if reconcile:
        _reconcile(move)
    return next_move


def _after(held: _Held, delay: float | None, *, claim_next: bool) -> Move | None:
    """Claim the next move if it is due at once and the budget allows; else schedule it."""
    if delay == _NOW and claim_next:
        # Same lock, same transaction: the next move goes on in this task.
        return _claim_held(held)
    if delay is not None:
        schedule_advance(held.saga, now=held.now, delay=delay)
    return None


def _answer_written(outcome: Outcome) -> Outcome:
    """The outcome with its provider's answer written (in the recording transaction)."""
    if outcome.answer is None:
        return outcome
    return Outcome(ok=True, result=outcome.answer.record())


def _undoing(step: SagaStep) -> bool:
    """Whether the step's compensation has begun: it may have looked for effects already."""
    undoing = (SagaStep.Status.COMPENSATING, SagaStep.Status.COMPENSATION_FAILED)
    return step.status in undoing or step.compensated_at is not None


def _reconcile(move: Move) -> None:
    """Undo again what a stale action may have done after its step's compensation looked.

    The stale attempt wrote nothing (its fence refused), but its provider call
    may have landed after the compensation asked the provider by the step's
    key and found nothing. The compensation is idempotent and asks again by
    the same key: what it finds now, it records and undoes. A failure is left
    to the beat sweeps (`payments.refund_late_charges`,
    `shipping.cancel_ended_orders_shipments`).
    """
    saga = Saga.objects.get(pk=move.saga_id)
    step = get_definition(saga.definition).steps[move.step_index]
    try:
        step.compensation(saga)
    except Exception as exc:
        logger.warning("saga %s: undoing a stale %s failed: %s", saga.pk, step.name, _describe(exc))


def _record_action(held: _Held, step: SagaStep, outcome: Outcome) -> float | None:
    """Update the step and saga for the action's outcome; returns when to move next."""
    saga, definition, now = held.saga, held.definition, held.now
    held.changed.add(step.index)
    step.lease_expires_at = None
    spec = definition.steps[step.index]
    limit = spec.max_attempts or settings.SAGA_MAX_ATTEMPTS
    # A transient failure may have acted (a timeout after the provider charged), and a
    # later permanent refusal does not say the earlier attempt did nothing.
    step.in_doubt = not outcome.ok and (step.in_doubt or not outcome.permanent_reason)
    if outcome.ok:
        step.status, step.result, step.finished_at = SagaStep.Status.DONE, outcome.result, now
        saga.current_step = step.index + 1
        if saga.cancel_requested:
            saga.status = Saga.Status.COMPENSATING
        return _NOW
    if outcome.permanent_reason or step.attempts >= limit:
        step.status, step.last_error, step.finished_at = SagaStep.Status.FAILED, outcome.error, now
        saga.failure_reason = outcome.permanent_reason or spec.exhausted_reason
        saga.last_error = outcome.error
        saga.status = Saga.Status.COMPENSATING
        return _NOW
    delay = _backoff(step.attempts)
    step.status, step.last_error = SagaStep.Status.PENDING, outcome.error
    step.next_attempt_at = now + timedelta(seconds=delay)
    return delay


def _record_compensation(held: _Held, step: SagaStep, outcome: Outcome) -> float | None:
    """Update the step and saga for the compensation's outcome; returns when to move next."""
    saga, now = held.saga, held.now
    held.changed.add(step.index)
    step.lease_expires_at = None
    if outcome.ok:
        # An action that failed for good (in doubt, so undone all the same) still reads
        # `failed`: that is the step that broke the saga. The doubt is settled either way.
        failed = step.index >= saga.current_step and step.finished_at is not None
        step.status = SagaStep.Status.FAILED if failed else SagaStep.Status.COMPENSATED
        step.compensated_at, step.in_doubt = now, False
        return _NOW
    # Attempts since the operator's last retry, which gives a fresh budget.
    attempts = step.compensation_attempts - step.compensation_attempts_before_retry
    if attempts >= settings.SAGA_COMPENSATION_MAX_ATTEMPTS:
        step.status, step.last_error = SagaStep.Status.COMPENSATION_FAILED, outcome.error
        saga.status, saga.last_error, saga.wake_at = (
            Saga.Status.COMPENSATION_FAILED,
            f"compensating {step.name}: {outcome.error}",
            None,
        )
        return None
    delay = _backoff(attempts)
    step.last_error = outcome.error
    step.next_attempt_at = now + timedelta(seconds=delay)
    return delay
