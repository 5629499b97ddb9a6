"""What the probe handlers leave behind, so tests can count effects."""

from django.db import models


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
