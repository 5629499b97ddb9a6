"""Shipments, with "mark shipped" / "mark delivered" through the carrier-update service."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from orders.models import InvalidTransition
from outbox.admin import ReadOnlyAdmin
from shipping.models import CarrierWebhookEvent, Shipment
from shipping.services import shipment_advance


@admin.register(Shipment)
class ShipmentAdmin(ReadOnlyAdmin):
    list_display = ("tracking_number", "order_id", "status", "created_at", "updated_at")
    list_filter = ("status",)
    search_fields = ("tracking_number", "order_id")
    actions = ("mark_shipped", "mark_delivered")

    def _advance(self, request: HttpRequest, queryset: QuerySet[Shipment], status: str) -> None:
        for shipment in queryset:
            try:
                shipment_advance(tracking_number=shipment.tracking_number, status=status)
            except InvalidTransition as exc:
                self.message_user(request, f"{shipment}: {exc}", messages.WARNING)
            else:
                self.message_user(request, f"{shipment}: marked {status}", messages.SUCCESS)

    @admin.action(description="Mark selected shipments shipped", permissions=["operate"])
    def mark_shipped(self, request: HttpRequest, queryset: QuerySet[Shipment]) -> None:
        self._advance(request, queryset, Shipment.Status.SHIPPED)

    @admin.action(description="Mark selected shipments delivered", permissions=["operate"])
    def mark_delivered(self, request: HttpRequest, queryset: QuerySet[Shipment]) -> None:
        self._advance(request, queryset, Shipment.Status.DELIVERED)


@admin.register(CarrierWebhookEvent)
class CarrierWebhookEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "tracking_number", "status", "occurred_at", "received_at")
    search_fields = ("event_id", "tracking_number")
