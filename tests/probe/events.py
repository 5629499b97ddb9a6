"""A test-only event whose payload tells the probe handler how to behave."""

from dataclasses import dataclass

from outbox.events import DomainEvent


@dataclass(frozen=True)
class ProbeHappened(DomainEvent):
    name = "probe.happened"
    aggregate_type = "probe"
    aggregate_field = "aggregate"

    aggregate: str
    seq: int
    # The handler fails this many attempts before it succeeds.
    fail_times: int = 0
    # The handler sleeps this long before it records its effect.
    delay_ms: int = 0
    # The handler fails while a `ProbeSwitch` with this name exists.
    fail_while: str = ""


@dataclass(frozen=True)
class ProbeBatched(ProbeHappened):
    """The same probe, for the one handler that lets its deliveries run in batches."""

    name = "probe.batched"
