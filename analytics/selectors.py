"""Reads of the analytics projection."""

from __future__ import annotations

import datetime

from django.db.models import QuerySet, Sum

from analytics.models import DailySales
from analytics.services import AMOUNTS, COUNTERS


def daily_sales_between(
    *, start: datetime.date | None = None, end: datetime.date | None = None
) -> QuerySet[DailySales]:
    """Days with sales figures from `start` to `end`, both included, oldest first."""
    days = DailySales.objects.order_by("date")
    if start is not None:
        days = days.filter(date__gte=start)
    if end is not None:
        days = days.filter(date__lte=end)
    return days


def daily_sales_totals(days: QuerySet[DailySales]) -> dict[str, object]:
    """Each figure summed over `days`."""
    return days.aggregate(**{field: Sum(field) for field in COUNTERS + AMOUNTS})
