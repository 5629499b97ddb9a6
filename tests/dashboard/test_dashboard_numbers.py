"""The page and its JSON show the numbers of a known dataset, and the charts draw them."""

import re

import pytest
from django.urls import reverse

from outbox.models import Delivery
from tests.dashboard.pages import SVG, bars, charts, series

pytestmark = pytest.mark.django_db

PAGE = reverse("admin-dashboard")
DATA = reverse("admin-dashboard-data")
SAGAS = {"running": 1, "completed": 3, "compensating": 0, "compensated": 1,
         "compensation_failed": 2}  # fmt: skip
ORDERS_LAST_HOUR = {"pending": 1, "confirmed": 2, "shipped": 0, "delivered": 0, "cancelled": 0,
                    "failed": 1}  # fmt: skip


def figure(html: str, element_id: str) -> str:
    match = re.search(rf'<td id="{element_id}"[^>]*>([^<]*)</td>', html)
    assert match, f"no #{element_id} on the page"
    return match.group(1)


def test_the_json_counts_the_known_dataset(staff, dataset):
    # when
    data = staff.get(DATA).json()
    # then
    outbox = data["outbox"]
    assert (outbox["pending"], outbox["dead"], outbox["blocked_aggregates"]) == (3, 3, 3)
    assert outbox["oldest_pending_age"] is not None
    assert data["dead_letters"] == {"probe.projection": 1, "probe.record": 2}
    assert data["events_per_second"] == 0.1  # 6 deliveries in the last 60 s
    assert sum(m["count"] for m in data["done_per_minute"]) == 8  # 20 minutes ago is off
    assert len(data["done_per_minute"]) == 10
    assert data["sagas"] == SAGAS
    assert data["orders_last_hour"] == ORDERS_LAST_HOUR
    blocked = {(b["handler"], b["aggregate_key"], b["waiting"]) for b in data["blocked"]}
    assert blocked == {("probe.record", "probe:b", 1), ("probe.record", "probe:c", 0),
                       ("probe.projection", "probe:c", 0)}  # fmt: skip


def test_the_json_carries_the_panels_the_page_swaps_in(staff, dataset):
    # when
    data = staff.get(DATA).json()
    # then
    assert figure(data["html"], "outbox-dead") == "3"
    assert set(charts(data["html"])) == set(charts(staff.get(PAGE).content.decode()))


def test_the_page_shows_backlog_lag_rate_dead_letters_and_blocked_aggregates(staff, dataset):
    # when
    html = staff.get(PAGE).content.decode()
    # then
    assert figure(html, "outbox-pending") == "3"
    assert figure(html, "outbox-lag").endswith(" s")
    assert figure(html, "outbox-rate") == "0.1"
    assert figure(html, "outbox-dead") == "3"
    assert figure(html, "outbox-blocked") == "3"
    blocking_url = reverse("admin:outbox_delivery_change", args=[dataset.blocking.pk])
    assert f'href="{blocking_url}"' in html


def test_an_empty_outbox_shows_no_lag_and_no_dead_letters(staff):
    # when
    html = staff.get(PAGE).content.decode()
    # then
    assert figure(html, "outbox-pending") == "0"
    assert figure(html, "outbox-lag") == "none"
    assert "Dead letters per handler" not in charts(html)
    assert sum(series(charts(html)["Deliveries handled per minute"]).values()) == 0


def test_the_charts_draw_one_bar_per_status_handler_and_minute(staff, dataset):
    # when
    drawn = charts(staff.get(PAGE).content.decode())
    # then
    assert set(drawn) == {"Deliveries handled per minute", "Dead letters per handler",
                          "Sagas by state", "Orders of the last hour by status"}  # fmt: skip
    assert series(drawn["Sagas by state"]) == SAGAS
    assert series(drawn["Orders of the last hour by status"]) == ORDERS_LAST_HOUR
    assert series(drawn["Dead letters per handler"]) == {"probe.projection": 1, "probe.record": 2}
    minutes = series(drawn["Deliveries handled per minute"])
    assert len(minutes) == 10 and sum(minutes.values()) == 8
    assert all(len(bar.findall(f"{SVG}rect")) == 1 for bar in bars(drawn["Sagas by state"]))


def test_failed_compensations_and_dead_letters_are_drawn_as_alerts(staff, dataset):
    # when
    drawn = charts(staff.get(PAGE).content.decode())
    # then
    alerts = {
        g.get("data-label") for g in bars(drawn["Sagas by state"]) if "alert" in g.get("class")
    }
    assert alerts == {"compensation_failed"}
    assert all("alert" in g.get("class") for g in bars(drawn["Dead letters per handler"]))


def test_a_dead_letter_bar_leads_to_that_handlers_dead_letters(staff, dataset):
    # given
    chart = charts(staff.get(PAGE).content.decode())["Dead letters per handler"]
    links = {a.find(f"{SVG}g").get("data-label"): a.get("href") for a in chart.iter(f"{SVG}a")}
    # when
    response = staff.get(links["probe.record"])
    # then
    listed = {d.pk for d in response.context["cl"].result_list}
    assert listed == set(
        Delivery.objects.filter(handler="probe.record", status="dead").values_list("pk", flat=True)
    )
    assert len(listed) == 2


def test_a_saga_bar_leads_to_the_sagas_in_that_state(staff, dataset):
    # given
    chart = charts(staff.get(PAGE).content.decode())["Sagas by state"]
    links = {a.find(f"{SVG}g").get("data-label"): a.get("href") for a in chart.iter(f"{SVG}a")}
    # when
    response = staff.get(links["compensation_failed"])
    # then
    statuses = [saga.status for saga in response.context["cl"].result_list]
    assert statuses == ["compensation_failed", "compensation_failed"]
