"""Probe handlers: record each effect; fail or sleep when the event says so."""

import os
import time

from outbox.registry import EventContext, subscribe
from tests.probe.events import ProbeHappened
from tests.probe.models import ProbeRecord


def _record(handler: str, event: ProbeHappened, context: EventContext) -> None:
    if event.delay_ms:
        time.sleep(event.delay_ms / 1000)
    if context.attempt <= event.fail_times:
        raise RuntimeError(f"probe failure on attempt {context.attempt}")
    ProbeRecord.objects.create(
        handler=handler,
        aggregate=event.aggregate,
        seq=event.seq,
        event_id=context.event_id,
        attempt=context.attempt,
        pid=os.getpid(),
    )


@subscribe(ProbeHappened, name="probe.record", max_attempts=4)
def probe_record(event: ProbeHappened, context: EventContext) -> None:
    _record("probe.record", event, context)


@subscribe(ProbeHappened, name="probe.projection", replayable=True)
def probe_projection(event: ProbeHappened, context: EventContext) -> None:
    _record("probe.projection", event, context)
