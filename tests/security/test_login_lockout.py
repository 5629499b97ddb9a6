"""Repeated failed log-ins lock the client out (429) of the token endpoint and the admin."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.api.conftest import post_json
from tests.orders.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("lockouts_on")]

LIMIT = 3


@pytest.fixture
def lockouts_on(settings):
    """django-axes as in production (tests/settings.py turns it off for everyone else)."""
    with override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=LIMIT):
        yield


@pytest.fixture(autouse=True)
def roomy_auth_rate(monkeypatch):
    """The per-second rate throttle stays out of the way: this is about failures, not speed."""
    from shopflow.api.throttling import AuthRateThrottle

    monkeypatch.setattr(AuthRateThrottle, "allow_request", lambda self, request, view: True)


def token(client, password: str, username: str = "ada", **extra):
    return post_json(
        client, "/api/auth/token/", {"username": username, "password": password}, **extra
    )


def test_the_token_endpoint_answers_429_after_n_failed_log_ins_even_to_the_right_password(client):
    # given
    UserFactory(username="ada")

    # when
    codes = [token(client, "wrong").status_code for _ in range(LIMIT)]
    right = token(client, "pw-123456!")

    # then
    assert codes == [400] * (LIMIT - 1) + [429]
    assert right.status_code == 429
    assert right.json() == {"detail": "Too many failed log-in attempts; try again later."}
    assert int(right["Retry-After"]) > 0


def test_a_lockout_is_per_client_address_and_username(client):
    UserFactory(username="ada")
    UserFactory(username="grace")
    for _ in range(LIMIT):
        token(client, "wrong")

    elsewhere = token(client, "pw-123456!", REMOTE_ADDR="10.0.0.9")
    other_user = token(client, "pw-123456!", username="grace")

    assert elsewhere.status_code == 200 and "token" in elsewhere.json()
    assert other_user.status_code == 200


def test_a_successful_log_in_clears_the_failures(client):
    UserFactory(username="ada")
    for _ in range(LIMIT - 1):
        token(client, "wrong")

    assert token(client, "pw-123456!").status_code == 200
    assert [token(client, "wrong").status_code for _ in range(LIMIT - 1)] == [400] * (LIMIT - 1)


def admin_login(client, password: str):
    return client.post("/admin/login/?next=/admin/", {"username": "operator", "password": password})


def test_the_admin_login_answers_429_after_n_failed_log_ins(client):
    # given
    UserFactory(username="operator", is_staff=True)

    # when
    codes = [admin_login(client, "wrong").status_code for _ in range(LIMIT)]
    right = admin_login(client, "pw-123456!")

    # then
    assert codes == [200] * (LIMIT - 1) + [429]  # 200: the form again, with its error
    assert right.status_code == 429
    assert "Too many failed log-in attempts" in right.content.decode()
    assert client.get("/admin/").status_code == 302  # still not logged in


def test_the_admin_login_still_works_below_the_limit(client):
    UserFactory(username="operator", is_staff=True)
    admin_login(client, "wrong")

    response = admin_login(client, "pw-123456!")

    assert (response.status_code, response["Location"]) == (302, "/admin/")
