"""One table the baseline endpoint inserts into."""

from django.conf import settings
from django.db import models


class BareRow(models.Model):
    """A row as small as a request can write: who, what, when."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"bare row {self.pk}"
