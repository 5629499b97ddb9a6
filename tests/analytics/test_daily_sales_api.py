"""`GET /api/analytics/daily/` for staff, and the daily sales admin with its totals."""

import datetime
from decimal import Decimal

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from analytics.models import DailySales
from tests.orders.factories import UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/analytics/daily/"
CHANGELIST = reverse("admin:analytics_dailysales_changelist")
BAD_FORMAT = "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."


def client_for(user=None):
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def staff_api():
    return client_for(UserFactory(username="ops", is_staff=True))


@pytest.fixture
def days():
    """Three days of sales, one of them in another month."""
    figures = [
        ("2026-03-01", 3, 2, 0, 1, "19.90", "0.00"),
        ("2026-03-02", 5, 4, 1, 0, "1234.50", "24.40"),
        ("2026-04-10", 1, 1, 0, 0, "9.95", "0.00"),
    ]
    return [
        DailySales.objects.create(
            date=datetime.date.fromisoformat(day), orders_placed=placed, orders_confirmed=ok,
            orders_cancelled=cancelled, orders_failed=failed, gross_revenue=Decimal(gross),
            refunds=Decimal(refunds),
        )
        for day, placed, ok, cancelled, failed, gross, refunds in figures
    ]  # fmt: skip


def test_staff_get_the_days_in_range_oldest_first_with_money_as_decimal_strings(staff_api, days):
    # when
    response = staff_api.get(URL, {"from": "2026-03-01", "to": "2026-03-02"})
    # then
    assert response.status_code == 200
    assert response.json() == {
        "count": 2,
        "next": None,
        "previous": None,
        "results": [
            {"date": "2026-03-01", "orders_placed": 3, "orders_confirmed": 2,
             "orders_cancelled": 0, "orders_failed": 1, "gross_revenue": "19.90",
             "refunds": "0.00"},
            {"date": "2026-03-02", "orders_placed": 5, "orders_confirmed": 4,
             "orders_cancelled": 1, "orders_failed": 0, "gross_revenue": "1234.50",
             "refunds": "24.40"},
        ],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["2026-03-01", "2026-03-02", "2026-04-10"]),
        ({"from": "2026-03-02"}, ["2026-03-02", "2026-04-10"]),
        ({"to": "2026-03-01"}, ["2026-03-01"]),
        ({"from": "2026-04-10", "to": "2026-04-10"}, ["2026-04-10"]),
        ({"from": "2026-03-03", "to": "2026-04-09"}, []),
    ],
)
def test_from_and_to_are_both_included_and_either_may_be_left_out(staff_api, days, query, expected):
    # when
    response = staff_api.get(URL, query)
    # then
    assert response.status_code == 200
    assert [day["date"] for day in response.json()["results"]] == expected


def test_a_long_range_is_paginated_and_the_links_keep_the_range(staff_api):
    # given: 60 days
    start = datetime.date(2026, 1, 1)
    DailySales.objects.bulk_create(
        DailySales(date=start + datetime.timedelta(days=n), orders_placed=n) for n in range(60)
    )
    # when
    first = staff_api.get(URL, {"from": "2026-01-01", "to": "2026-12-31"}).json()
    second = staff_api.get(first["next"]).json()
    # then
    assert (first["count"], len(first["results"]), first["previous"]) == (60, 50, None)
    assert "from=2026-01-01" in first["next"]
    assert "to=2026-12-31" in first["next"]
    assert (len(second["results"]), second["next"]) == (10, None)
    assert second["results"][-1]["date"] == "2026-03-01"


def test_customers_are_forbidden_and_anonymous_callers_unauthenticated(days):
    # when
    customer = client_for(UserFactory(username="ada")).get(URL)
    anonymous = client_for().get(URL)
    # then
    assert customer.status_code == 403
    assert anonymous.status_code == 401
    assert "results" not in customer.json()
    assert "results" not in anonymous.json()


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ({"from": "2026-13-01"}, {"from": [BAD_FORMAT]}),
        ({"to": "yesterday"}, {"to": [BAD_FORMAT]}),
        ({"from": "2026-02-30", "to": "2026-03-01"}, {"from": [BAD_FORMAT]}),
        ({"from": "2026-03-02", "to": "2026-03-01"}, {"from": ["'from' must not be after 'to'."]}),
        ({"from": "yesterday", "to": "2026-13-01"}, {"from": [BAD_FORMAT], "to": [BAD_FORMAT]}),
    ],
)
def test_bad_dates_are_400_with_a_message_for_each_field(staff_api, days, query, errors):
    # when
    response = staff_api.get(URL, query)
    # then
    assert response.status_code == 400
    assert response.json() == errors


def test_the_admin_lists_the_days_with_totals_over_the_filtered_ones(admin_client, days):
    # when
    everything = admin_client.get(CHANGELIST)
    march = admin_client.get(CHANGELIST, {"date__year": "2026", "date__month": "3"})
    # then
    assert everything.status_code == march.status_code == 200
    assert everything.context["totals"] == {
        "orders_placed": 9, "orders_confirmed": 7, "orders_cancelled": 1, "orders_failed": 1,
        "gross_revenue": Decimal("1264.35"), "refunds": Decimal("24.40"),
    }  # fmt: skip
    assert march.context["totals"]["orders_placed"] == 8
    assert march.context["totals"]["gross_revenue"] == Decimal("1254.40")
    html = march.content.decode()
    assert "Totals over these days" in html
    assert "1254.40" in html
    assert [day.date.isoformat() for day in march.context["cl"].result_list] == [
        "2026-03-02", "2026-03-01",
    ]  # fmt: skip


def test_admin_totals_count_every_filtered_day_not_only_the_shown_page(admin_client):
    # given: more days than one admin page shows
    start = datetime.date(2026, 1, 1)
    DailySales.objects.bulk_create(
        DailySales(date=start + datetime.timedelta(days=n), orders_placed=1,
                   gross_revenue=Decimal("1.25"))
        for n in range(150)
    )  # fmt: skip
    # when
    page = admin_client.get(CHANGELIST)
    # then
    assert len(page.context["cl"].result_list) == 100
    assert page.context["totals"]["orders_placed"] == 150
    assert page.context["totals"]["gross_revenue"] == Decimal("187.50")


def test_the_admin_with_no_days_shows_zero_totals(admin_client):
    # when
    page = admin_client.get(CHANGELIST)
    # then
    assert page.status_code == 200
    html = page.content.decode()
    assert "Totals over these days" in html
    assert "<td>0</td>" in html
    assert "<td>0.00</td>" in html
