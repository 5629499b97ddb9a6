"""The benchmark's event: tiny payload, one aggregate id, an optional trace flag."""

from dataclasses import dataclass

from outbox.events import DomainEvent


@dataclass(frozen=True)
class BenchPinged(DomainEvent):
    name = "bench.pinged"
    aggregate_type = "bench"
    aggregate_field = "aggregate"

    aggregate: str
    seq: int
    # The handler records when it started, for the latency run.
    traced: bool = False
