"""Admin for the catalog and for the stock reservations orders hold (read-only).

Stock moves only through the services: a product's `on_hand` and `reserved`
are never form fields, restocking is an action that calls `product_restock`,
and reservations are shown, never edited.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from inventory.models import Product, Reservation, ReservationLine
from inventory.services import product_create, product_restock
from outbox.admin import ReadOnlyInline

STOCK_FIELDS = ["on_hand", "reserved", "available"]


class RestockForm(forms.Form):
    quantity = forms.IntegerField(min_value=1, max_value=1_000_000, help_text="units to add")


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "price", "active", *STOCK_FIELDS]
    list_filter = ["active"]
    search_fields = ["sku", "name"]
    actions = ["restock"]

    def get_fields(self, request: HttpRequest, obj: Product | None = None) -> list[str]:
        if obj is None:  # `on_hand` is the initial stock of a new product
            return ["sku", "name", "price", "on_hand"]
        return ["sku", "name", "price", "active", *STOCK_FIELDS, "created_at", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Product | None = None) -> list[str]:
        if obj is None:
            return []
        return ["sku", *STOCK_FIELDS, "created_at", "updated_at"]

    def get_form(self, request: HttpRequest, obj: Product | None = None, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["labels"] = {"on_hand": "Initial stock"}
        return super().get_form(request, obj, **kwargs)

    def save_model(self, request: HttpRequest, obj: Product, form: Any, change: bool) -> None:
        if not change:
            created = product_create(sku=obj.sku, name=obj.name, price=obj.price, stock=obj.on_hand)
            obj.pk, obj.created_at, obj.updated_at = (
                created.pk,
                created.created_at,
                created.updated_at,
            )
            return
        # Only what the form edits: a whole-row save would write back the stock
        # read when this request loaded the product, undoing any reservation
        # committed in between.
        if form.changed_data:
            obj.save(update_fields=[*form.changed_data, "updated_at"])

    def has_delete_permission(self, request: HttpRequest, obj: Product | None = None) -> bool:
        return False  # orders and reservations point at products; deactivate instead

    @admin.action(description="Restock selected products", permissions=["change"])
    def restock(self, request: HttpRequest, queryset: QuerySet[Product]) -> TemplateResponse | None:
        form = RestockForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return TemplateResponse(
                request,
                "admin/inventory/product/restock.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Restock products",
                    "opts": self.model._meta,
                    "products": queryset,
                    "form": form,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                },
            )
        quantity = form.cleaned_data["quantity"]
        skus = [product_restock(sku=p.sku, quantity=quantity).sku for p in queryset]
        self.message_user(
            request, f"Added {quantity} units to {', '.join(skus)}.", messages.SUCCESS
        )
        return None


class ReservationLineInline(ReadOnlyInline):
    model = ReservationLine
    fields = ["product", "quantity"]
    readonly_fields = fields


@admin.register(Reservation)
class ReservationAdmin(admin.ModelAdmin):
    """What each order holds; released and committed only by the order's saga."""

    list_display = ["order_id", "status", "lines_summary", "created_at", "updated_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["order_id", "lines__product__sku"]
    fields = ["order_id", "status", "created_at", "updated_at"]
    readonly_fields = fields
    inlines = [ReservationLineInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Reservation]:
        return super().get_queryset(request).prefetch_related("lines__product")

    @admin.display(description="lines")
    def lines_summary(self, reservation: Reservation) -> str:
        return ", ".join(f"{ln.quantity} x {ln.product.sku}" for ln in reservation.lines.all())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
