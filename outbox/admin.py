"""Operator views of the outbox: events with their deliveries, and dead letters.

Everything is read-only; the only writes are the actions, which call the same
services as the management commands (requeue, replay through the inbox).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from outbox.events import event_types
from outbox.models import Delivery, OutboxEvent
from outbox.registry import all_handlers
from outbox.replay import EventsTooOld, ReplayRefused, events_replay
from outbox.selectors import (
    DEAD,
    EVENT_STATES,
    EventSelection,
    dead_letters,
    event_state,
    events_in_state,
    events_with_state,
)
from outbox.services import deliveries_acknowledge, deliveries_requeue


class ReadOnlyAdmin(admin.ModelAdmin):
    """No add, change or delete; actions need the model's change permission."""

    show_full_result_count = False  # a COUNT(*) over the whole outbox on every page is costly
    ordering = ("-id",)  # newest first

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")


class ReadOnlyInline(admin.TabularInline):
    """Rows shown under their parent, never added, changed or deleted there."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


def _pretty_json(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


# --- Filters whose choices come from the code, not from a DISTINCT over the table ---


class EventStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [(state, state) for state in EVENT_STATES]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return events_in_state(self.value(), queryset) if self.value() else queryset


class EventTypeFilter(admin.SimpleListFilter):
    title = "type"
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [(name, name) for name in sorted(event_types())]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(type=self.value()) if self.value() else queryset


class AggregateTypeFilter(admin.SimpleListFilter):
    title = "aggregate type"
    parameter_name = "aggregate_type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        names = sorted({cls.aggregate_type for cls in event_types().values()})
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(aggregate_type=self.value()) if self.value() else queryset


class HandlerFilter(admin.SimpleListFilter):
    title = "handler"
    parameter_name = "handler"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [(name, name) for name in sorted(all_handlers())]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(handler=self.value()) if self.value() else queryset


# --- Events ---------------------------------------------------------------------------


class DeliveryInline(ReadOnlyInline):
    model = Delivery
    fields = ("handler", "status", "attempts", "next_attempt_at", "done_at", "last_error")
    readonly_fields = fields
    show_change_link = True


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "type", "aggregate", "state", "created_at", "event_id")
    list_filter = (EventTypeFilter, EventStateFilter, AggregateTypeFilter)
    search_help_text = "Event number, event UUID, aggregate id or TYPE:ID"
    search_fields = ("aggregate_id",)  # shows the box; get_search_results does the matching
    fields = (
        "id", "event_id", "type", "version", "aggregate_type", "aggregate_id",
        "occurred_at", "created_at", "pretty_payload", "pretty_headers",
    )  # fmt: skip
    readonly_fields = ("pretty_payload", "pretty_headers")
    inlines = (DeliveryInline,)
    actions = ("requeue_dead_letters", "replay_events")

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboxEvent]:
        return events_with_state(super().get_queryset(request))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(_event_search(term)), False

    @admin.display(description="aggregate")
    def aggregate(self, obj: OutboxEvent) -> str:
        return f"{obj.aggregate_type}:{obj.aggregate_id}"

    @admin.display(description="state")
    def state(self, obj: OutboxEvent) -> str:
        return event_state(obj)

    @admin.display(description="payload")
    def pretty_payload(self, obj: OutboxEvent) -> str:
        return _pretty_json(obj.payload)

    @admin.display(description="headers")
    def pretty_headers(self, obj: OutboxEvent) -> str:
        return _pretty_json(obj.headers)

    @admin.action(description="Requeue dead letters", permissions=["operate"])
    def requeue_dead_letters(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = deliveries_requeue(ids=dead_letters(events=queryset).values_list("pk", flat=True))
        self.message_user(request, f"Requeued {count} dead letters.", messages.SUCCESS)

    @admin.action(description="Replay selected events", permissions=["operate"])
    def replay_events(self, request: HttpRequest, queryset: QuerySet) -> None:
        selection = EventSelection(ids=tuple(queryset.values_list("pk", flat=True)))
        try:
            summary = events_replay(selection)
        except EventsTooOld as exc:
            self.message_user(
                request, f"Nothing replayed: {exc}; use replay_outbox --force.", messages.ERROR
            )
        except ReplayRefused as exc:
            self.message_user(request, f"Nothing replayed: {exc}.", messages.ERROR)
        else:
            self.message_user(request, f"Replayed {summary}.", messages.SUCCESS)


def _event_search(term: str) -> Q:
    """An event number, an event UUID, `type:id` or an aggregate id, matched exactly."""
    query = Q(aggregate_id=term)
    if term.isdigit():
        query |= Q(pk=int(term))
    aggregate_type, colon, aggregate_id = term.partition(":")
    if colon:
        query |= Q(aggregate_type=aggregate_type, aggregate_id=aggregate_id)
    if (event_uuid := _as_uuid(term)) is not None:
        query |= Q(event_id=event_uuid)
    return query


def _as_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term)
    except ValueError:
        return None


# --- Deliveries (dead letters) -------------------------------------------------------------


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "id", "handler", "status", "event_link", "aggregate_key", "attempts",
        "next_attempt_at", "error",
    )  # fmt: skip
    list_filter = ("status", HandlerFilter)
    list_select_related = ("event",)
    search_help_text = "Event number, event UUID or aggregate TYPE:ID"
    search_fields = ("aggregate_key",)
    fields = (
        "id", "handler", "status", "event_link", "aggregate_key", "attempts",
        "next_attempt_at", "lease_id", "lease_expires_at", "started_lease_id", "created_at",
        "done_at",
        "acknowledged_at", "last_error", "traceback",
    )  # fmt: skip
    readonly_fields = ("event_link", "traceback")
    actions = ("requeue_dead_letters", "acknowledge_dead_letters")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        query = Q(aggregate_key=term)
        if term.isdigit():
            query |= Q(event_id=int(term))
        if (event_uuid := _as_uuid(term)) is not None:
            query |= Q(event__event_id=event_uuid)
        return queryset.filter(query), False

    @admin.display(description="event")
    def event_link(self, obj: Delivery) -> str:
        url = reverse("admin:outbox_outboxevent_change", args=[obj.event_id])
        return format_html('<a href="{}">{}</a>', url, obj.event)

    @admin.display(description="last error")
    def error(self, obj: Delivery) -> str:
        return obj.last_error.splitlines()[0][:120] if obj.last_error else ""

    @admin.display(description="traceback")
    def traceback(self, obj: Delivery) -> str:
        return format_html("<pre>{}</pre>", obj.last_traceback or "-")

    @admin.action(description="Requeue dead letters", permissions=["operate"])
    def requeue_dead_letters(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = deliveries_requeue(ids=queryset.filter(status=DEAD).values_list("pk", flat=True))
        self.message_user(request, f"Requeued {count} dead letters.", messages.SUCCESS)

    @admin.action(
        description="Acknowledge dead letters (audit stops reporting them)",
        permissions=["operate"],
    )
    def acknowledge_dead_letters(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = deliveries_acknowledge(ids=queryset.values_list("pk", flat=True))
        self.message_user(request, f"Acknowledged {count} dead letters.", messages.SUCCESS)
