"""Reads of the saga engine."""

from __future__ import annotations

from django.db.models import Count

from sagas.models import Saga


def saga_status_counts() -> dict[str, int]:
    """How many sagas are in each status (every status, zeros included)."""
    rows = Saga.objects.values_list("status").annotate(n=Count("id")).order_by()
    counts = dict(rows)
    return {status: counts.get(status, 0) for status in Saga.Status.values}
