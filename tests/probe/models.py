"""What the probe handlers leave behind, and the knobs tests turn to steer them."""

from django.db import models

from outbox.models import EventSource
from tests.probe.events import ProbeHappened


class ProbeRecord(models.Model):
    """One handler effect: which handler saw which event of which aggregate."""

    handler = models.CharField(max_length=100)
    aggregate = models.CharField(max_length=100)
    seq = models.IntegerField()
    event_id = models.UUIDField()
    attempt = models.IntegerField()
    pid = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.handler} {self.aggregate}#{self.seq}"


class ProbeSwitch(models.Model):
    """While it exists, probe events naming it in `fail_while` fail.

    Only for `handler` when set, else for every handler. Unlike `fail_times`,
    which counts attempts, a switch survives a requeue (which resets attempts),
    so a test decides when a dead letter may succeed by deleting the switch.
    """

    name = models.CharField(max_length=100)
    handler = models.CharField(max_length=100, blank=True)
    # Instead of raising, the handler ends its process at once (`os._exit`), as an
    # OOM kill or a segfault in a C extension would: no exception, no rollback hook.
    kills_process = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"{self.name} ({self.handler or 'every handler'})"


class ProbeAggregate(EventSource, models.Model):
    """A model that raises events, recorded by the outbox when it is saved."""

    name = models.CharField(max_length=100, unique=True)
    seq = models.IntegerField(default=0)

    def __str__(self) -> str:
        return self.name

    def happen(self) -> None:
        """Advance the sequence and raise the matching event."""
        self.seq += 1
        self.raise_event(ProbeHappened(aggregate=self.name, seq=self.seq))
