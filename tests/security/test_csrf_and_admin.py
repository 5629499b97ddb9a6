"""Session-authenticated writes need a CSRF token; the admin is for staff only."""

from __future__ import annotations

import pytest
from django.middleware.csrf import get_token
from django.test import RequestFactory
from rest_framework.test import APIClient

from tests.api.conftest import order_body

pytestmark = pytest.mark.django_db


def session_client(user) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_a_session_post_to_orders_without_a_csrf_token_is_403(customer, mug):
    response = session_client(customer).post("/api/orders/", order_body(), format="json")

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_a_session_post_with_the_csrf_token_goes_through(customer, mug):
    # given the token the browsable API would have put in the page and the cookie
    client = session_client(customer)
    token = get_token(RequestFactory().get("/"))
    client.cookies["csrftoken"] = token

    response = client.post("/api/orders/", order_body(), format="json", HTTP_X_CSRFTOKEN=token)

    assert response.status_code == 201


def test_a_session_cancel_without_a_csrf_token_is_403(customer, mug):
    from tests.orders.factories import order_placed

    order = order_placed(customer, {"MUG-1": 1})

    response = session_client(customer).post(f"/api/orders/{order.id}/cancel/", {}, format="json")

    assert response.status_code == 403


def test_a_token_authenticated_post_needs_no_csrf_token(customer, mug):
    from tests.api.conftest import client_for

    client = client_for(customer)
    client.handler.enforce_csrf_checks = True

    response = client.post("/api/orders/", order_body(), format="json")

    assert response.status_code == 201


def test_the_admin_turns_away_an_active_customer_even_with_the_right_password(client, customer):
    login = client.post(
        "/admin/login/?next=/admin/", {"username": customer.username, "password": "pw-123456!"}
    )

    assert login.status_code == 200  # the form again: not a staff account
    assert "staff account" in login.content.decode()
    assert client.get("/admin/").status_code == 302


def test_the_admin_lets_staff_in(client, staff):
    login = client.post(
        "/admin/login/?next=/admin/", {"username": staff.username, "password": "pw-123456!"}
    )

    assert (login.status_code, login["Location"]) == (302, "/admin/")
    assert client.get("/admin/").status_code == 200


def test_an_inactive_staff_user_is_turned_away(client, staff):
    staff.is_active = False
    staff.save()
    client.force_login(staff)

    assert client.get("/admin/").status_code == 302
