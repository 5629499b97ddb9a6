"""The daily sales projection, built from domain events only."""

from __future__ import annotations

from django.db import models


class DailySales(models.Model):
    """One day's orders and money, by the day (UTC) each event occurred."""

    date = models.DateField(primary_key=True)
    orders_placed = models.PositiveIntegerField(default=0)
    orders_confirmed = models.PositiveIntegerField(default=0)
    orders_cancelled = models.PositiveIntegerField(default=0)
    orders_failed = models.PositiveIntegerField(default=0)
    gross_revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    refunds = models.DecimalField(max_digits=16, decimal_places=2, default=0)

    class Meta:
        ordering = ["date"]
        verbose_name_plural = "daily sales"

    def __str__(self) -> str:
        return f"{self.date}: {self.orders_placed} placed, {self.gross_revenue} gross"
