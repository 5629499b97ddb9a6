"""Sign-up and token log-in: POST /api/auth/register/ and /api/auth/token/."""

import pytest
from django.contrib.auth import get_user_model

from tests.api.conftest import client_for, post_json

pytestmark = pytest.mark.django_db

REGISTER = "/api/auth/register/"
TOKEN = "/api/auth/token/"
GOOD = {"username": "ada", "email": "ada@example.com", "password": "correct-horse-42"}


def test_registering_returns_the_new_account_without_its_password():
    response = post_json(client_for(), REGISTER, GOOD)

    assert response.status_code == 201
    user = get_user_model().objects.get(username="ada")
    assert response.json() == {"id": user.pk, "username": "ada", "email": "ada@example.com"}
    assert user.check_password("correct-horse-42")
    assert not user.is_staff


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"username": "Ada"}, "username"),  # taken, whatever its case
        ({"password": "short"}, "password"),
        ({"password": "password123"}, "password"),  # too common
        ({"password": "48151623424815"}, "password"),  # entirely numeric
        ({"password": "ada-example-com"}, "password"),  # too similar to the e-mail
        ({"email": "not-an-email"}, "email"),
        ({"email": ""}, "email"),
        ({"email": 42}, "email"),
        ({"username": "white space"}, "username"),
        ({"username": "x" * 151}, "username"),
        ({"username": ["ada"]}, "username"),
        ({"username": "nul\x00byte"}, "username"),
        ({"password": 12345678901}, "password"),
        ({"password": "lone\ud800surrogate-ok-42"}, "password"),
    ],
)
def test_registering_refuses_a_bad_or_taken_account(customer, change, field):
    # given an existing user "ada" (the customer fixture)
    users_before = get_user_model().objects.count()

    # when
    response = post_json(client_for(), REGISTER, {**GOOD, **change})

    # then
    assert response.status_code == 400
    assert field in response.json()
    assert get_user_model().objects.count() == users_before


@pytest.mark.parametrize("missing", ["username", "email", "password"])
def test_registering_needs_every_field(missing):
    body = {k: v for k, v in GOOD.items() if k != missing}

    response = post_json(client_for(), REGISTER, body)

    assert response.status_code == 400
    assert missing in response.json()


def test_a_registered_user_gets_a_token_that_authenticates():
    post_json(client_for(), REGISTER, GOOD)

    response = post_json(client_for(), TOKEN, {"username": "ada", "password": GOOD["password"]})

    assert response.status_code == 200
    assert list(response.json()) == ["token"]
    authed = client_for()
    authed.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert authed.get("/api/orders/").status_code == 200


def test_asking_twice_returns_the_same_token(customer):
    first = post_json(client_for(), TOKEN, {"username": "ada", "password": "pw-123456!"})
    second = post_json(client_for(), TOKEN, {"username": "ada", "password": "pw-123456!"})

    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ada", "password": "wrong"},
        {"username": "nobody", "password": "pw-123456!"},
        {"username": "ada"},
        {"password": "pw-123456!"},
        {"username": {"$ne": ""}, "password": "pw-123456!"},
        {"username": "ada\ud800", "password": "pw-123456!"},
        [],
    ],
)
def test_token_is_refused_for_bad_credentials(customer, body):
    response = post_json(client_for(), TOKEN, body)

    assert response.status_code == 400
    assert "token" not in response.json()


def test_an_inactive_user_gets_no_token(customer):
    customer.is_active = False
    customer.save()

    response = post_json(client_for(), TOKEN, {"username": "ada", "password": "pw-123456!"})

    assert response.status_code == 400


def test_a_body_that_is_not_json_is_a_400_with_a_detail():
    response = client_for().post(REGISTER, data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert "detail" in response.json()
