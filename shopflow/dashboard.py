"""The operator dashboard at /admin/dashboard/: outbox, sagas and orders at a glance.

Staff only (the admin's own login check). The page shows the panels once and
then fetches `data/` every ADMIN_DASHBOARD_REFRESH_SECONDS: fresh numbers as
JSON, with the panels re-rendered on the server, charts included as inline SVG,
so nothing is loaded from outside and it works offline. Every number is a
grouped count or a range over an index (see the selectors it calls).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from orders.models import Status as OrderStatus
from orders.selectors import order_status_counts
from outbox.selectors import (
    BlockedAggregate,
    OutboxStats,
    blocked_aggregates,
    deliveries_done_per_minute,
    deliveries_done_since,
    outbox_stats,
)
from sagas.models import Saga
from sagas.selectors import saga_status_counts
from shopflow.charts import Bar, bar_chart, column_chart

THROUGHPUT_MINUTES = 10  # the per-minute chart's span
RATE_WINDOW = timedelta(seconds=60)  # events per second: deliveries done in it / its seconds
ORDERS_WINDOW = timedelta(hours=1)
BLOCKED_SHOWN = 10
PANELS_TEMPLATE = "admin/dashboard/panels.html"


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Everything the dashboard shows, read at one moment."""

    generated_at: datetime
    outbox: OutboxStats
    events_per_second: float
    done_per_minute: list[tuple[datetime, int]]
    blocked: list[BlockedAggregate]
    sagas: dict[str, int]
    orders_last_hour: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "generated_at": self.generated_at.isoformat(),
            "outbox": self.outbox.as_dict(),
            "events_per_second": self.events_per_second,
            "done_per_minute": [
                {"minute": minute.isoformat(), "count": n} for minute, n in self.done_per_minute
            ],
            "dead_letters": _dead_letters(self.outbox),
            "blocked": [dataclasses.asdict(b) for b in self.blocked],
            "sagas": self.sagas,
            "orders_last_hour": self.orders_last_hour,
        }


def snapshot(now: datetime | None = None) -> Snapshot:
    """Read the dashboard's numbers."""
    now = now or timezone.now()
    return Snapshot(
        generated_at=now,
        outbox=outbox_stats(now=now),
        events_per_second=round(
            deliveries_done_since(now - RATE_WINDOW) / RATE_WINDOW.total_seconds(), 2
        ),
        done_per_minute=deliveries_done_per_minute(minutes=THROUGHPUT_MINUTES, now=now),
        blocked=blocked_aggregates(limit=BLOCKED_SHOWN),
        sagas=saga_status_counts(),
        orders_last_hour=order_status_counts(since=now - ORDERS_WINDOW),
    )


def _dead_letters(stats: OutboxStats) -> dict[str, int]:
    return {name: handler.dead for name, handler in stats.handlers.items() if handler.dead}


def _changelist(model: str, **filters: str) -> str:
    return f"{reverse(f'admin:{model}_changelist')}?{urlencode(filters)}"


def _status_bars(counts: dict[str, int], model: str, alarming: str) -> list[Bar]:
    """One bar per status, linking to the admin list in that status; `alarming` ones in red."""
    return [
        Bar(status, n, _changelist(model, status__exact=status), alert=status == alarming and n > 0)
        for status, n in counts.items()
    ]


def panels_context(current: Snapshot) -> dict[str, Any]:
    """What the panels template needs: the snapshot, its charts and their links."""
    dead = [
        Bar(name, n, _changelist("outbox_delivery", status__exact="dead", handler=name), alert=True)
        for name, n in _dead_letters(current.outbox).items()
    ]
    sagas = _status_bars(current.sagas, "sagas_saga", Saga.Status.COMPENSATION_FAILED)
    orders = _status_bars(current.orders_last_hour, "orders_order", OrderStatus.FAILED)
    minutes = [Bar(f"{minute:%H:%M}", n) for minute, n in current.done_per_minute]
    return {
        "snapshot": current,
        "dead_letter_total_url": _changelist("outbox_delivery", status__exact="dead"),
        "blocked": [
            (b, reverse("admin:outbox_delivery_change", args=[b.delivery_id]))
            for b in current.blocked
        ],
        "charts": {
            "throughput": column_chart(minutes, title="Deliveries handled per minute"),
            "dead_letters": bar_chart(dead, title="Dead letters per handler") if dead else "",
            "sagas": bar_chart(sagas, title="Sagas by state"),
            "orders": bar_chart(orders, title="Orders of the last hour by status"),
        },
        "refresh_seconds": settings.ADMIN_DASHBOARD_REFRESH_SECONDS,
    }


def dashboard(request: HttpRequest) -> TemplateResponse:
    """The dashboard page."""
    context = {
        **admin.site.each_context(request),
        "title": "Operator dashboard",
        "data_url": reverse("admin-dashboard-data"),
        **panels_context(snapshot()),
    }
    return TemplateResponse(request, "admin/dashboard/page.html", context)


def dashboard_data(request: HttpRequest) -> JsonResponse:
    """The dashboard's numbers as JSON, and its panels rendered (`html`) for the page."""
    current = snapshot()
    html = render_to_string(PANELS_TEMPLATE, panels_context(current), request=request)
    return JsonResponse({**current.as_dict(), "html": html})


# Mounted at admin/dashboard/ ahead of the admin's own catch-all. admin_view sends
# anyone who is not active staff to the admin login and marks the answers never-cache.
urlpatterns = [
    path("", admin.site.admin_view(dashboard), name="admin-dashboard"),
    path("data/", admin.site.admin_view(dashboard_data), name="admin-dashboard-data"),
]
