"""Which handlers subscribe to which event types.

Each app declares its handlers in its `handlers.py` with `@subscribe`; the
outbox app imports every `handlers` module at start-up (see `apps.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from outbox.events import DomainEvent


@dataclasses.dataclass(frozen=True)
class EventContext:
    """What a handler may want to know about the event beyond its fields."""

    event_id: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    occurred_at: Any
    headers: dict[str, Any]
    attempt: int


HandlerFunc = Callable[[DomainEvent, EventContext], None]
# Called after a failed attempt has been rolled back: (event, context, error, dead).
FailureHook = Callable[[DomainEvent, EventContext, BaseException, bool], None]


@dataclasses.dataclass(frozen=True)
class Handler:
    """A subscriber: its unique name, the events it takes and how it is retried."""

    name: str
    func: HandlerFunc
    event_types: frozenset[str]
    queue: str = "events"
    max_attempts: int | None = None
    replayable: bool = False
    on_failure: FailureHook | None = None
    # False: run with no transaction open (it makes a network call); see `subscribe`.
    atomic: bool = True
    # True: a chunk of its deliveries may run in one transaction (see `subscribe`).
    batch: bool = False

    def __call__(self, event: DomainEvent, context: EventContext) -> None:
        self.func(event, context)


class UnknownHandler(LookupError):
    """A delivery names a handler that is not registered here."""


_HANDLERS: dict[str, Handler] = {}


def subscribe(
    *event_types: type[DomainEvent] | str,
    name: str | None = None,
    queue: str = "events",
    max_attempts: int | None = None,
    replayable: bool = False,
    on_failure: FailureHook | None = None,
    atomic: bool = True,
    batch: bool = False,
) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register the decorated function as a handler of the given event types.

    `replayable` marks a projection that may run again for an event it already
    handled (`replay_outbox --reprocess`); leave it off for anything with side effects.
    `on_failure` runs, in its own transaction, after a failed attempt was rolled
    back, so a handler can leave a visible trace of the failure.
    `atomic=False` is for a handler that calls the network (an e-mail): it runs
    with no transaction open and its delivery is marked done afterwards, so it
    must be idempotent on its own (commit a claim first, act, record the result)
    and raise `outbox.delivery.InProgressElsewhere` when another copy is acting.
    `batch=True` lets a worker run the deliveries of one message for such
    handlers in one transaction, behind one start and one flip statement: for a
    handler whose effects are database writes in that transaction and that does
    not mind sharing a rollback. When any call of the batch raises, the batch is
    rolled back and each delivery runs again alone (see `outbox.batches`).
    """
    if batch and not atomic:
        raise TypeError("batch=True needs atomic=True: a batch is one transaction")
    wire_names = frozenset(t if isinstance(t, str) else t.name for t in event_types)
    if not wire_names:
        raise TypeError("subscribe() needs at least one event type")

    def register(func: HandlerFunc) -> HandlerFunc:
        handler_name = name or f"{func.__module__}.{func.__qualname__}"
        existing = _HANDLERS.get(handler_name)
        if existing is not None and existing.func.__qualname__ != func.__qualname__:
            raise TypeError(f"handler name {handler_name!r} is taken")
        _HANDLERS[handler_name] = Handler(
            handler_name,
            func,
            wire_names,
            queue,
            max_attempts,
            replayable,
            on_failure,
            atomic,
            batch,
        )
        return func

    return register


def unsubscribe(name: str) -> None:
    """Remove a handler (tests use this to clean up what they registered)."""
    _HANDLERS.pop(name, None)


def handlers_for(event_type: str) -> list[Handler]:
    """Handlers subscribed to an event type, in name order."""
    return sorted(
        (h for h in _HANDLERS.values() if event_type in h.event_types), key=lambda h: h.name
    )


def get_handler(name: str) -> Handler:
    """The handler registered under `name`."""
    try:
        return _HANDLERS[name]
    except KeyError:
        raise UnknownHandler(f"no handler named {name!r} is registered") from None


def all_handlers() -> dict[str, Handler]:
    """Every registered handler by name."""
    return dict(_HANDLERS)
