"""Saga instances with their step table and the order's timeline; repairs go through services."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join

from orders.selectors import order_timeline
from outbox.admin import ReadOnlyAdmin, ReadOnlyInline
from sagas.models import Saga, SagaStep
from sagas.services import SagaStateError, saga_compensate_now, saga_mark_resolved, saga_retry


class SagaStepInline(ReadOnlyInline):
    model = SagaStep
    fields = (
        "index",
        "name",
        "status",
        "attempts",
        "compensation_attempts",
        "in_doubt",
        "last_error",
        "next_attempt_at",
        "lease_expires_at",
        "started_at",
        "finished_at",
        "compensated_at",
    )
    readonly_fields = fields


@admin.register(Saga)
class SagaAdmin(ReadOnlyAdmin):
    list_display = (
        "key",
        "definition",
        "status",
        "current_step",
        "failure_reason",
        "cancel_requested",
        "created_at",
        "finished_at",
        "resolved_at",
    )
    list_filter = ("status", "definition", "failure_reason")
    search_fields = ("key",)
    readonly_fields = (
        "id",
        "definition",
        "key",
        "status",
        "current_step",
        "cancel_requested",
        "failure_reason",
        "last_error",
        "wake_at",
        "resolution_note",
        "resolved_at",
        "created_at",
        "updated_at",
        "finished_at",
        "timeline",
    )
    inlines = (SagaStepInline,)
    actions = ("retry_from_failed_step", "compensate_now", "mark_resolved")

    @admin.display(description="Order timeline")
    def timeline(self, saga: Saga) -> str:
        entries = order_timeline(order_id=saga.key)
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td></tr>", ((e.occurred_at, e.type) for e in entries)
        )
        return format_html("<table>{}</table>", rows) if entries else "-"

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[Saga],
        service: Callable[..., Saga],
        done: str,
    ) -> None:
        for saga in queryset:
            try:
                service(saga_id=saga.pk)
            except SagaStateError as exc:
                self.message_user(request, f"{saga}: {exc}", messages.WARNING)
            else:
                self.message_user(request, f"{saga}: {done}", messages.SUCCESS)

    @admin.action(description="Retry from the failed step", permissions=["operate"])
    def retry_from_failed_step(self, request: HttpRequest, queryset: QuerySet[Saga]) -> None:
        self._each(request, queryset, saga_retry, "compensation retried")

    @admin.action(description="Compensate now", permissions=["operate"])
    def compensate_now(self, request: HttpRequest, queryset: QuerySet[Saga]) -> None:
        self._each(request, queryset, saga_compensate_now, "compensation requested")

    @admin.action(description="Mark resolved (with a note)", permissions=["operate"])
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet[Saga]) -> HttpResponse | None:
        note = request.POST.get("note", "")
        if "apply" not in request.POST:
            context = {
                **self.admin_site.each_context(request),
                "sagas": queryset,
                "opts": self.opts,
                "action": "mark_resolved",
            }
            return TemplateResponse(request, "admin/sagas/saga/mark_resolved.html", context)
        self._each(
            request,
            queryset,
            lambda saga_id: saga_mark_resolved(saga_id=saga_id, note=note),
            "marked resolved",
        )
        return None
