"""Admin for orders: read-only pages with their timeline; status moves only by actions.

An order is a record of what a customer bought and what happened to it, so
its fields, lines, prices and status are never form fields. Operators change
an order only through actions that call the same services as the API.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string

from orders.models import InvalidTransition, Order, OrderItem
from orders.selectors import order_timeline
from orders.services import order_cancel
from outbox.admin import ReadOnlyInline

CANCELLED_BY_STAFF = "cancelled by staff"


class OrderItemInline(ReadOnlyInline):
    model = OrderItem
    fields = ["sku", "name", "quantity", "unit_price", "line_total"]
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["number", "customer_email", "status", "total", "currency", "created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["number", "customer__email"]
    list_select_related = ["customer"]
    date_hierarchy = "created_at"
    actions = ["cancel_selected"]
    inlines = [OrderItemInline]
    fieldsets = [
        (None, {"fields": ["number", "customer", "status", "total", "currency"]}),
        ("Outcome", {"fields": ["cancel_reason", "failure_reason"]}),
        ("Shipping", {"fields": ["shipping_address"]}),
        ("Dates", {"fields": ["created_at", "updated_at"]}),
        ("Timeline", {"fields": ["timeline"]}),
    ]
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]

    @admin.display(description="customer e-mail", ordering="customer__email")
    def customer_email(self, order: Order) -> str:
        return order.customer.email

    @admin.display(description="timeline")
    def timeline(self, order: Order) -> str:
        entries = [
            (entry, json.dumps(entry.data, sort_keys=True))
            for entry in order_timeline(order_id=order.id)
        ]
        return render_to_string("admin/orders/order/timeline.html", {"entries": entries})

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # orders are placed through the API, priced from the catalog

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Actions on the list need it; a single order's page is view-only.
        return obj is None and super().has_change_permission(request)

    @admin.action(description="Cancel selected orders", permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        outcomes: dict[str, list[str]] = defaultdict(list)
        for order in queryset.order_by("created_at"):
            outcomes[self._cancel(request, order)].append(order.number)
        self._report(request, outcomes)

    def _cancel(self, request: HttpRequest, order: Order) -> str:
        try:
            cancelled = order_cancel(order_id=order.id, reason=CANCELLED_BY_STAFF)[1]
        except InvalidTransition as refused:
            return f"not cancellable ({refused.current})"
        if not cancelled:
            return "already cancelled"
        self.log_change(request, order, "Cancelled with the admin action.")
        return "cancelled"

    def _report(self, request: HttpRequest, outcomes: dict[str, list[str]]) -> None:
        for outcome, numbers in sorted(outcomes.items()):
            level = {"cancelled": messages.SUCCESS, "already cancelled": messages.INFO}.get(
                outcome, messages.ERROR
            )
            label = outcome[0].upper() + outcome[1:]
            self.message_user(request, f"{label}: {', '.join(numbers)}.", level)
