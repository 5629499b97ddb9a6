"""What a saga is: an ordered list of steps, each an action with its compensation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sagas.models import Saga
from shopflow.fences import Fence


class PermanentFailure(Exception):
    """An action's error that no retry can fix; `reason` is the business reason."""

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(message or reason)


class TransientFailure(Exception):
    """An action's error that the same call may not hit again (timeout, provider down)."""


@dataclass(frozen=True)
class Answer:
    """What a remote step's provider answered, for the engine to write when it records the step.

    A remote action returns this rather than writing the answer itself: the
    engine calls `record` in the transaction that records the step's outcome,
    under the saga's lock and only if the attempt still holds its step (the
    lock and the fencing token, read under it, are the fence), so one
    transaction writes both. `record` returns the step's result.
    """

    record: Callable[[], dict[str, Any]]


# An action gets the attempt's fence: it passes it to every service that writes
# what the action did, which writes through it (shopflow/fences.py, sagas/fencing.py).
Action = Callable[[Saga, Fence], dict[str, Any] | Answer | None]
Compensation = Callable[[Saga], None]


@dataclass(frozen=True)
class Step:
    """One local transaction of a saga and how to undo it.

    Both callables must be idempotent: they may run again after a crash, with
    an idempotency key derived from the saga and the step (`step_key`). The
    action's local writes go through its fence, so only the step's current
    attempt makes them; the compensation must undo what a stale attempt's
    provider call did too, which it finds by the same key.
    """

    name: str
    action: Action
    compensation: Compensation
    # Failure reason recorded when transient errors exhaust the attempts.
    exhausted_reason: str = ""
    max_attempts: int | None = None
    local: bool = False


@dataclass(frozen=True)
class SagaDefinition:
    """A named saga: its steps, and what to do when it completes or is compensated."""

    name: str
    steps: tuple[Step, ...]
    # Runs in the completing transaction; returns False to compensate instead. The
    # engine does not ask `called_off` before completing: this must refuse a called-off saga.
    on_completed: Callable[[Saga], bool]
    # Runs in the transaction that finishes compensation.
    on_compensated: Callable[[Saga], None]
    # Whether the business object was called off, read at each step boundary (once per
    # engine transaction that crosses one): the cancellation's own message may still be
    # on its way, and nothing new should start.
    called_off: Callable[[Saga], bool] = lambda saga: False


_DEFINITIONS: dict[str, SagaDefinition] = {}


def register(definition: SagaDefinition) -> SagaDefinition:
    """Make a definition known to the engine by its name."""
    _DEFINITIONS[definition.name] = definition
    return definition


def get_definition(name: str) -> SagaDefinition:
    """The registered definition called `name`."""
    return _DEFINITIONS[name]


def step_key(saga: Saga, step: str) -> str:
    """The idempotency key for a step's external call: the saga and step, never the attempt."""
    return f"saga:{saga.pk}:{step}"
