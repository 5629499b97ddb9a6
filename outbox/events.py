"""Domain events: frozen dataclasses with a wire name, a version and a typed JSON codec.

Subclasses register themselves by wire name when they are defined, so the outbox
can turn a stored row back into the exact event that was raised. The payload
codec is pydantic's, which round-trips Decimal, UUID and datetime exactly.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any, ClassVar

from pydantic import TypeAdapter


class UnknownEventType(LookupError):
    """A stored event names a type no code here declares."""


_EVENT_TYPES: dict[str, type[DomainEvent]] = {}


@dataclasses.dataclass(frozen=True)
class DomainEvent:
    """Base of every domain event; subclasses are frozen dataclasses.

    A subclass sets `name` (wire name, `order.created`), `aggregate_type`, and
    `aggregate_field` (the field holding the aggregate's id); `version` when the
    payload's shape changes.
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    aggregate_type: ClassVar[str] = ""
    aggregate_field: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.name:
            return
        existing = _EVENT_TYPES.get(cls.name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise TypeError(f"event name {cls.name!r} is taken by {existing.__qualname__}")
        _EVENT_TYPES[cls.name] = cls

    @property
    def aggregate_id(self) -> str:
        """The id of the aggregate this event is about, as text."""
        return str(getattr(self, self.aggregate_field))

    def to_payload(self) -> dict[str, Any]:
        """The event's fields as JSON-ready data."""
        return _adapter(type(self)).dump_python(self, mode="json")

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DomainEvent:
        """Rebuild the event from `to_payload()` output."""
        return _adapter(cls).validate_python(payload)


@cache
def _adapter(cls: type[DomainEvent]) -> TypeAdapter[Any]:
    return TypeAdapter(cls)


def event_class(name: str) -> type[DomainEvent]:
    """The event class registered under a wire name."""
    try:
        return _EVENT_TYPES[name]
    except KeyError:
        raise UnknownEventType(f"unknown event type {name!r}") from None


def event_types() -> dict[str, type[DomainEvent]]:
    """Every registered event class by wire name."""
    return dict(_EVENT_TYPES)
