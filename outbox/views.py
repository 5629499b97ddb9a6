"""/healthz and /metrics: can this deployment take orders, and how far behind is the outbox.

/healthz answers 200 when the database and the broker answer and 503 naming
the part that does not; it never raises and never waits long on a dead
dependency. An outbox whose oldest pending delivery is older than
OUTBOX_HEALTH_MAX_LAG_SECONDS is reported "degraded" with a 200: the web
process is fine and restarting it would not help the workers catch up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily

from outbox.metrics import scrape
from outbox.selectors import outbox_stats
from shopflow.celery import app as celery_app

logger = logging.getLogger("shopflow.outbox.health")

# Seconds one broker connection attempt may take; at most two attempts are made,
# so a dead broker costs a probe a few seconds, not a hang.
BROKER_CHECK_TIMEOUT = 1.0

OK = "ok"


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Database, broker and outbox backlog; 503 when the database or the broker is down."""
    body: dict[str, Any] = {
        "status": OK,
        "database": _check("database", _database_ping),
        "broker": _check("broker", _broker_ping),
    }
    if body["database"] == OK:
        body["outbox"] = _check("outbox", _outbox_health)
    else:
        body["outbox"] = "error: database unavailable"
    failed = [part for part, value in body.items() if str(value).startswith("error")]
    if failed:
        body["status"] = "error"
    elif body["outbox"]["status"] != OK:
        body["status"] = body["outbox"]["status"]
    return JsonResponse(body, status=503 if failed else 200)


def _check(part: str, probe: Callable[[], Any]) -> Any:
    """The probe's result (OK when it returns nothing), or "error: <type>" when it raises."""
    try:
        result = probe()
    except Exception as exc:
        # The detail (hosts, ports, users) goes to the log, not to an anonymous caller.
        logger.warning("healthz: %s check failed", part, exc_info=True)
        return f"error: {type(exc).__name__}"
    return OK if result is None else result


def _database_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker_ping() -> None:
    # connect_timeout bounds amqp; the redis transport reads its own socket timeouts.
    timeouts = {
        "socket_connect_timeout": BROKER_CHECK_TIMEOUT,
        "socket_timeout": BROKER_CHECK_TIMEOUT,
    }
    with celery_app.connection_for_write(
        connect_timeout=BROKER_CHECK_TIMEOUT, transport_options=timeouts
    ) as conn:
        conn.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=2 * BROKER_CHECK_TIMEOUT
        )


def _outbox_health() -> dict[str, Any]:
    stats = outbox_stats()
    lag = stats.oldest_pending_age or 0.0
    max_lag = settings.OUTBOX_HEALTH_MAX_LAG_SECONDS
    return {
        "status": "degraded" if max_lag and lag > max_lag else OK,
        "pending": stats.pending,
        "oldest_pending_age_seconds": lag,
        "dead_letters": stats.dead,
        "blocked_aggregates": stats.blocked_aggregates,
    }


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Every process's outbox counters and histograms, plus backlog gauges read now."""
    return HttpResponse(scrape(OutboxCollector()), content_type=CONTENT_TYPE_LATEST)


class OutboxCollector:
    """Backlog, lag and dead letters, read from the database at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The outbox gauges; only `shopflow_outbox_stats_up 0` when the database fails."""
        try:
            stats = outbox_stats()
        except Exception:
            logger.warning("metrics: outbox gauges unavailable", exc_info=True)
            yield _gauge("shopflow_outbox_stats_up", "1 when the outbox gauges were read.", 0)
            return
        yield _gauge("shopflow_outbox_stats_up", "1 when the outbox gauges were read.", 1)
        pending = GaugeMetricFamily(
            "shopflow_outbox_pending_deliveries",
            "Deliveries not yet handled (due, retrying, leased or blocked), by handler.",
            labels=["handler"],
        )
        dead = GaugeMetricFamily(
            "shopflow_outbox_dead_letters",
            "Dead-lettered deliveries waiting for an operator, by handler.",
            labels=["handler"],
        )
        blocked = GaugeMetricFamily(
            "shopflow_outbox_blocked_aggregates",
            "Aggregates held by a dead letter (later events wait behind it), by handler.",
            labels=["handler"],
        )
        for name, handler in stats.handlers.items():
            pending.add_metric([name], handler.pending)
            dead.add_metric([name], handler.dead)
            blocked.add_metric([name], handler.blocked_aggregates)
        yield from (pending, dead, blocked)
        yield _gauge(
            "shopflow_outbox_oldest_pending_age_seconds",
            "Seconds since the oldest pending delivery was written (0 when none is pending).",
            stats.oldest_pending_age or 0.0,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
