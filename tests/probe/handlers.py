"""Probe handlers: record each effect; fail or sleep when the event says so."""

import os
import time

from django.core.cache import cache

from outbox.registry import EventContext, subscribe
from tests.probe.events import ProbeBatched, ProbeHappened
from tests.probe.models import ProbeRecord, ProbeSwitch

# Cache key a sleeping handler announces its process under, so a test can kill it.
SLEEPING_KEY = "probe:sleeping:{handler}:{event_id}"


def _record(handler: str, event: ProbeHappened, context: EventContext) -> None:
    if event.delay_ms:
        cache.set(SLEEPING_KEY.format(handler=handler, event_id=context.event_id), os.getpid(), 60)
        time.sleep(event.delay_ms / 1000)
    if context.attempt <= event.fail_times:
        raise RuntimeError(f"probe failure on attempt {context.attempt}")
    switch = _switch_on(handler, event)
    if switch is not None and switch.kills_process:
        os._exit(1)
    if switch is not None:
        raise RuntimeError(f"probe switch {event.fail_while!r} is on")
    ProbeRecord.objects.create(
        handler=handler,
        aggregate=event.aggregate,
        seq=event.seq,
        event_id=context.event_id,
        attempt=context.attempt,
        pid=os.getpid(),
    )


def _switch_on(handler: str, event: ProbeHappened) -> ProbeSwitch | None:
    if not event.fail_while:
        return None
    switches = ProbeSwitch.objects.filter(name=event.fail_while, handler__in=("", handler))
    return switches.first()


@subscribe(ProbeHappened, name="probe.record", max_attempts=4)
def probe_record(event: ProbeHappened, context: EventContext) -> None:
    _record("probe.record", event, context)


@subscribe(ProbeHappened, name="probe.projection", replayable=True)
def probe_projection(event: ProbeHappened, context: EventContext) -> None:
    _record("probe.projection", event, context)


@subscribe(ProbeBatched, name="probe.batched", max_attempts=4, batch=True)
def probe_batched(event: ProbeBatched, context: EventContext) -> None:
    _record("probe.batched", event, context)
