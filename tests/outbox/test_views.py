"""/healthz and /metrics answer for the deployment, and never with a 500."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from outbox.models import Delivery
from outbox.services import events_record
from tests.probe.events import ProbeHappened

pytestmark = pytest.mark.django_db(transaction=True)


def _closed_port() -> int:
    """A local port nothing listens on (bound once by the OS, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def database_unreachable(transactional_db: None) -> Iterator[None]:
    """Point the default connection at a closed port for the test, then back."""
    original = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(_closed_port())
    yield
    connection.close()
    connection.settings_dict["PORT"] = original


@pytest.fixture
def broker_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    # Celery reads CELERY_BROKER_URL from the environment before its own configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{_closed_port()}/0")


@override_settings(OUTBOX_WAKE_ON_COMMIT=False)
def _record_probe_events(*seqs: int) -> None:
    """Record probe events (two deliveries each) that no relay picks up."""
    with transaction.atomic():
        events_record([ProbeHappened(aggregate=f"a{seq}", seq=seq) for seq in seqs])


def _scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200
    families = text_string_to_metric_families(response.content.decode())
    return {family.name: family.samples for family in families}


def _value(samples: list, **labels: str) -> float:
    return sum(s.value for s in samples if labels.items() <= s.labels.items())


def test_healthz_reports_database_broker_and_outbox_backlog(client):
    # given
    _record_probe_events(1, 2)
    Delivery.objects.filter(handler="probe.record", event__aggregate_id="a1").update(status="dead")
    # when
    response = client.get("/healthz")
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["broker"] == "ok"
    assert body["outbox"]["status"] == "ok"
    assert body["outbox"]["pending"] == 3
    assert body["outbox"]["dead_letters"] == 1
    assert body["outbox"]["blocked_aggregates"] == 1
    assert body["outbox"]["oldest_pending_age_seconds"] >= 0


def test_healthz_reports_no_lag_when_nothing_is_pending(client):
    # when
    body = client.get("/healthz").json()
    # then
    assert body["outbox"] == {
        "status": "ok",
        "pending": 0,
        "oldest_pending_age_seconds": 0.0,
        "dead_letters": 0,
        "blocked_aggregates": 0,
    }


@override_settings(OUTBOX_HEALTH_MAX_LAG_SECONDS=60)
def test_healthz_reports_a_lagging_outbox_as_degraded_but_still_answers_200(client):
    # given
    _record_probe_events(1)
    Delivery.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    # when
    response = client.get("/healthz")
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["outbox"]["status"] == "degraded"
    assert body["outbox"]["oldest_pending_age_seconds"] >= 300


@override_settings(OUTBOX_HEALTH_MAX_LAG_SECONDS=0)
def test_healthz_lag_check_is_off_when_the_threshold_is_zero(client):
    # given
    _record_probe_events(1)
    Delivery.objects.update(created_at=timezone.now() - timedelta(days=1))
    # when
    body = client.get("/healthz").json()
    # then
    assert body["status"] == "ok"
    assert body["outbox"]["status"] == "ok"


def test_healthz_is_503_naming_the_broker_when_its_port_is_closed(client, broker_unreachable):
    # when
    response = client.get("/healthz")
    # then
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["broker"].startswith("error: ")
    assert body["database"] == "ok"
    assert body["outbox"]["pending"] == 0


def test_healthz_answers_ok_on_the_filesystem_broker(client, monkeypatch):
    # given
    monkeypatch.setenv("CELERY_BROKER_URL", "filesystem://")
    # when
    response = client.get("/healthz")
    # then
    assert response.status_code == 200
    assert response.json()["broker"] == "ok"


def test_healthz_is_503_naming_the_database_when_it_is_unreachable(client, database_unreachable):
    # when
    response = client.get("/healthz")
    # then
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"] == "error: OperationalError"
    assert body["outbox"].startswith("error: ")
    assert body["broker"] == "ok"


def test_healthz_does_not_tell_anonymous_callers_where_the_database_lives(
    client, database_unreachable
):
    # when
    text = client.get("/healthz").content.decode()
    # then
    assert connection.settings_dict["PORT"] not in text
    assert "127.0.0.1" not in text


def test_metrics_parse_and_carry_the_outbox_gauges(client):
    # given
    _record_probe_events(1, 2)
    Delivery.objects.filter(handler="probe.projection", event__aggregate_id="a2").update(
        status="dead"
    )
    # when
    families = _scrape(client)
    # then
    assert _value(families["shopflow_outbox_stats_up"]) == 1
    pending = families["shopflow_outbox_pending_deliveries"]
    assert _value(pending, handler="probe.record") == 2
    assert _value(pending, handler="probe.projection") == 1
    dead = families["shopflow_outbox_dead_letters"]
    assert _value(dead, handler="probe.projection") == 1
    assert _value(dead, handler="probe.record") == 0
    blocked = families["shopflow_outbox_blocked_aggregates"]
    assert _value(blocked, handler="probe.projection") == 1
    assert _value(families["shopflow_outbox_oldest_pending_age_seconds"]) >= 0
    assert "shopflow_outbox_relay_batch_seconds" in families


def test_metrics_still_answer_without_the_database_gauges_when_it_is_down(
    client, database_unreachable
):
    # when
    families = _scrape(client)
    # then
    assert _value(families["shopflow_outbox_stats_up"]) == 0
    assert "shopflow_outbox_pending_deliveries" not in families
    assert "shopflow_outbox_relay_batch_seconds" in families
