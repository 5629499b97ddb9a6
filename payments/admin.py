"""Payments and the sandbox ledger, read-only; refunds go through the service."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from outbox.admin import ReadOnlyAdmin
from payments.gateways import GatewayError
from payments.models import Payment, SandboxLedgerEntry
from payments.services import payment_refund


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = (
        "order_id", "amount", "currency", "status", "closed", "provider_ref", "created_at"
    )  # fmt: skip
    # closed: compensation found no charge; a charge that lands later goes back (RELIABILITY.md)
    list_filter = ("status", "closed", "currency")
    search_fields = ("order_id", "provider_ref", "refund_ref")
    actions = ("refund",)

    @admin.action(description="Refund selected captured payments", permissions=["operate"])
    def refund(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        for payment in queryset:
            if payment.status != Payment.Status.CAPTURED:
                self.message_user(
                    request, f"{payment}: only a captured payment can be refunded", messages.WARNING
                )
                continue
            try:
                payment_refund(order_id=payment.order_id)
            except GatewayError as exc:
                self.message_user(request, f"{payment}: refund failed: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{payment}: refunded", messages.SUCCESS)


@admin.register(SandboxLedgerEntry)
class SandboxLedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("reference", "kind", "amount", "currency", "charge_reference", "created_at")
    list_filter = ("kind",)
    search_fields = ("reference", "idempotency_key", "charge_reference")
