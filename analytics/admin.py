"""The daily sales projection in the admin, with totals over the filtered days."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from analytics.models import DailySales
from analytics.selectors import daily_sales_totals
from outbox.admin import ReadOnlyAdmin


@admin.register(DailySales)
class DailySalesAdmin(ReadOnlyAdmin):
    list_display = ("date", "orders_placed", "orders_confirmed", "orders_cancelled",
                    "orders_failed", "gross_revenue", "refunds")  # fmt: skip
    date_hierarchy = "date"
    ordering = ("-date",)
    change_list_template = "admin/analytics/dailysales/change_list.html"

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            response.context_data["totals"] = daily_sales_totals(changelist.queryset)
        return response
