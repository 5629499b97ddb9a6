"""Throttles answer 429 past their rate; the rates are settings."""

import pytest
from rest_framework.throttling import UserRateThrottle

from shopflow.api.throttling import AuthRateThrottle
from tests.api.conftest import client_for, post_json

pytestmark = pytest.mark.django_db


def test_token_requests_past_the_auth_rate_are_429(customer, monkeypatch):
    # given a rate of two a minute
    monkeypatch.setitem(AuthRateThrottle.THROTTLE_RATES, "auth", "2/min")
    body = {"username": "ada", "password": "wrong"}

    # when
    codes = [post_json(client_for(), "/api/auth/token/", body).status_code for _ in range(3)]

    # then
    assert codes == [400, 400, 429]


def test_a_user_past_the_user_rate_is_429_with_a_detail(customer, monkeypatch):
    monkeypatch.setitem(UserRateThrottle.THROTTLE_RATES, "user", "1/min")
    client = client_for(customer)

    client.get("/api/orders/")
    response = client.get("/api/orders/")

    assert response.status_code == 429
    assert "detail" in response.json()
    assert "Retry-After" in response
